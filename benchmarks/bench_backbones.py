"""Backbone throughput on CPU: inference at batch 8 and the training step, AttNet beside timm peers.

Every model of a table is timed round-robin in the same process (reid.profiling), and the table reports
ratios against peers measured in that run: "speed vs pvt_v2_b1" (> 1 is faster) and "time vs resnet50"
(< 1 is faster). torch.compile is opt-in (--compile): it costs about a minute and a half per model here.

    python benchmarks/bench_backbones.py                       # eager inference, both sizes, + training step
    python benchmarks/bench_backbones.py --compile --models attnet_t1,attnet_t2,resnet50,pvt_v2_b1 --sizes 288x144
"""
from __future__ import annotations

import argparse

import torch

import reid.models  # noqa: F401  (registers attnet_* in timm)
from reid.models.backbones import count_macs, count_parameters, create_backbone
from reid.profiling import interleaved_medians
from reid.report import markdown_table

PEERS = "attnet_t1,attnet_t2,resnet50,convnext_tiny,swin_tiny_patch4_window7_224,pvt_v2_b1,pvt_v2_b2"


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def inference_table(names: list[str], size: tuple[int, int], batch: int, rounds: int, compile_: bool) -> str:
    models, notes = {}, []
    for name in names:
        backbone = create_backbone(name, size)
        if backbone.note:
            notes.append(backbone.note)
        models[name] = backbone
    images = {name: torch.randn(batch, 3, *b.input_size) for name, b in models.items()}
    runners = {}
    for name, backbone in models.items():
        model = backbone.model.eval()
        runners[f"{name} (eager)"] = lambda m=model, x=images[name]: m(x)
        if compile_:
            compiled = torch.compile(model)
            runners[f"{name} (compiled)"] = lambda m=compiled, x=images[name]: m(x)
    with torch.inference_mode():
        seconds = interleaved_medians(runners, rounds=rounds, warmup=2)

    def peer(name: str, mode: str) -> float | None:
        return seconds.get(f"{name} ({mode})")

    rows = []
    for key, value in seconds.items():
        name, mode = key.rsplit(" (", 1)
        mode = mode.rstrip(")")
        backbone = models[name]
        pvt, resnet = peer("pvt_v2_b1", mode), peer("resnet50", mode)
        rows.append([
            name, mode, f"{backbone.input_size[0]}x{backbone.input_size[1]}",
            f"{count_parameters(backbone.model) / 1e6:.2f}",
            f"{count_macs(backbone.model, backbone.input_size) / 1e9:.2f}",
            f"{value * 1e3:.1f}", f"{batch / value:.1f}",
            f"{pvt / value:.2f}x" if pvt else "-", f"{value / resnet:.2f}x" if resnet else "-",
        ])
    header = ["model", "mode", "input", "params (M)", "GMACs", f"ms / batch {batch}", "images/s",
              "speed vs pvt_v2_b1", "time vs resnet50"]
    table = markdown_table(header, rows)
    return table + ("\n\n" + "\n".join(f"note: {n}" for n in notes) if notes else "")


def training_table(names: list[str], size: tuple[int, int], batch: int, rounds: int) -> str:
    runners, models = {}, {}
    for name in names:
        model = create_backbone(name, size, num_classes=100, check_size=False).model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        images, labels = torch.randn(batch, 3, *size), torch.randint(0, 100, (batch,))

        def step(model=model, optimizer=optimizer, images=images, labels=labels):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()

        runners[name], models[name] = step, model
    seconds = interleaved_medians(runners, rounds=rounds, warmup=1)
    base = seconds.get("resnet50")
    rows = [[name, f"{size[0]}x{size[1]}", f"{value * 1e3:.0f}", f"{batch / value:.1f}",
             f"{base / value:.2f}x" if base else "-"] for name, value in seconds.items()]
    header = ["model", "input", f"ms / step (batch {batch})", "images/s", "speed vs resnet50"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=PEERS)
    parser.add_argument("--sizes", default="288x144,224x224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models (slow to build)")
    parser.add_argument("--train-models", default="attnet_t1,resnet50")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU\n")
    for size in map(parse_size, args.sizes.split(",")):
        print(f"## Inference, batch {args.batch}, {size[0]}x{size[1]}\n")
        print(inference_table(args.models.split(","), size, args.batch, args.rounds, args.compile), "\n", flush=True)
    if not args.no_train:
        size = parse_size(args.sizes.split(",")[0])
        print(f"## Training step (forward + backward + AdamW), batch {args.train_batch}, {size[0]}x{size[1]}\n")
        print(training_table(args.train_models.split(","), size, args.train_batch, max(3, args.rounds // 2)))


if __name__ == "__main__":
    main()
