"""GPU speed in one run, as ratios side by side, sized to fit a GPU check of about 7 minutes.

The default workload, in order of what a short run should keep if time runs out:
  1. the data pipeline (training transforms, batch 64);
  2. the token mixers at 64 and 128 px, forward + backward: ours eager and compiled, the released operator,
     Swin's window attention;
  3. inference of attnet_t1, the released T1 and pvt_v2_b1, eager;
  4. the re-ID training step (ReIDModel, identity + both triplet losses, AdamW; 288x144, batch 64) of the same
     three, eager, with peak memory;
  5. inference and 6. training again under compile ``auto`` (what a long CUDA run gets: CUDA graphs), each model
     compiled in a process of its own from a cold cache.
Every measurement runs in a child process with a time limit taken from what is left of ``--budget`` (420 s by
default), so the whole run ends inside it whatever a compilation costs; a measurement cut short is printed as
such, with the time it had. Every line goes to stdout as it is measured and to ``--out`` (markdown), so a run
that is stopped still leaves its sections. ``--sweep`` adds the long survey (every peer, T2, every compile mode).

Peers measured in the same process, interleaved (see reid.profiling):
  ours      reid's AttNet / ATConv (channel-last tokens)
  released  tests/models/reference_attnet.py: a literal re-implementation of the authors' released network
            (NCHW, unfold, adaptive pooling), which loads their checkpoints and matches them to 1e-5
  timm      pvt_v2_b1 (the sweep: pvt_v2_b2, resnet50, convnext_tiny, swin_tiny_patch4_window7_224)

    python benchmarks/bench_gpu.py --out benchmarks/out/gpu.md         # the GPU check (cold cache: ~7 minutes)
    python benchmarks/bench_gpu.py --device cpu --quick               # a smoke run of the same code on a CPU
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from reference_attnet import RefATConv, RefAttNet  # noqa: E402  (the released network, re-implemented)

from reid.data.loader import SampleDataset, default_workers, make_loader  # noqa: E402
from reid.engine.compile import compile_model  # noqa: E402
from reid.losses import ReIDLoss, weighted_sum  # noqa: E402
from reid.models import ATConv  # noqa: E402
from reid.models.backbones import create_backbone  # noqa: E402
from reid.models.reid_model import ReIDModel, ReIDOutput  # noqa: E402
from reid.profiling import interleaved_medians  # noqa: E402
from reid.report import markdown_table  # noqa: E402

CHECK_MODELS = ("attnet_t1", "released_t1", "pvt_v2_b1")
SWEEP_MODELS = ("attnet_t1", "attnet_t2", "released_t1", "released_t2", "pvt_v2_b1", "pvt_v2_b2", "resnet50",
                "convnext_tiny", "swin_tiny_patch4_window7_224")
SWEEP_MODES = ("off", "default", "max-autotune", "reduce-overhead")


def timed(functions: dict[str, Callable[[], object]], device: torch.device, rounds: int, warmup: int
          ) -> dict[str, float]:
    """Median seconds per call, interleaved; each call waits for its GPU work, so the next starts clean."""
    def synced(function: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            function()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return run

    return interleaved_medians({name: synced(f) for name, f in functions.items()}, rounds=rounds, warmup=warmup)


def peak_gib(function: Callable[[], object], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    function()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def autocast(device: torch.device):
    dtype = torch.bfloat16 if device.type == "cuda" else None
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def resolved(mode: str) -> str:
    """The compile mode a long CUDA training run gets under "auto" (what this benchmark measures as auto)."""
    return "reduce-overhead" if mode == "auto" else mode


def backbone(name: str, size: tuple[int, int], device: torch.device) -> nn.Module:
    if name.startswith("released_"):
        model = RefAttNet(f"attnet_{name.removeprefix('released_')}")
    else:
        model = create_backbone(name, size, num_classes=1000, check_size=False).model
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


class ReleasedReID(nn.Module):
    """The released AttNet with the same pooled BNNeck head, for the training-step comparison."""

    def __init__(self, variant: str, classes: int) -> None:
        super().__init__()
        self.backbone = RefAttNet(f"attnet_{variant}")
        width = self.backbone.norm.normalized_shape[0]
        self.bottleneck = nn.BatchNorm1d(width)
        self.classifier = nn.Linear(width, classes, bias=False)

    def forward(self, images, is_infrared=None):
        pooled = self.backbone.norm(self.backbone.forward_features(images).mean((2, 3)))
        embeddings = self.bottleneck(pooled)
        return ReIDOutput(pooled, embeddings, self.classifier(embeddings))


# Measurements: each returns its rows (lists of cells) --------------------------------------------------------
def measure_mixers(device: torch.device, size: int, batch: int, channels: int, rounds: int) -> list[list[str]]:
    """Forward + backward of one token mixer on a (B, C, H, W) map, ms; ratios against the released ATConv."""
    from timm.models.swin_transformer import WindowAttention, window_partition, window_reverse

    ours, released = ATConv(channels).to(device), RefATConv(channels).to(device)  # speed only: own weights
    window = WindowAttention(channels, num_heads=4, window_size=7).to(device)
    compiled = compile_model(ours, "default", device) if device.type == "cuda" else ours
    maps = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
    padded = -size % 7

    def swin(maps=maps):
        tokens = nn.functional.pad(maps.permute(0, 2, 3, 1), (0, 0, 0, padded, 0, padded))
        side = size + padded
        out = window(window_partition(tokens, (7, 7)).view(-1, 49, channels)).view(-1, 7, 7, channels)
        return window_reverse(out, (7, 7), side, side)

    def step(module):
        def run():
            with autocast(device):
                out = module(maps)
            out.float().square().mean().backward()
        return run

    times = timed({"ours": step(ours), "ours compiled": step(compiled), "released": step(released),
                   "swin window": step(swin)}, device, rounds, 2)
    return [[f"{size}x{size}", *(f"{1000 * times[k]:.2f}" for k in times),
             f"{times['released'] / times['ours compiled']:.2f}x", f"{times['released'] / times['ours']:.2f}x"]]


def measure_inference(device: torch.device, names: list[str], size: tuple[int, int], batch: int, rounds: int,
                      mode: str) -> list[list[str]]:
    images = torch.randn(batch, 3, *size, device=device)
    functions, compile_seconds = {}, {}
    for name in names:
        model = compile_model(backbone(name, size, device).eval(), resolved(mode), device)

        def infer(model=model):
            with torch.no_grad(), autocast(device):
                model(images)

        started = time.perf_counter()
        for _ in range(3):  # compilation and CUDA-graph capture happen in the first calls
            infer()
        compile_seconds[name] = time.perf_counter() - started
        functions[name] = infer
    times = timed(functions, device, rounds, 1)
    return [[name, mode, f"{compile_seconds[name]:.0f}" if mode != "off" else "-", f"{batch / times[name]:.0f}",
             _ratio(times, "pvt_v2_b1", name)] for name in names]


def _ratio(times: dict[str, float], peer: str, name: str) -> str:
    """Speed of ``name`` against ``peer`` measured in the same run, or "-" when the peer was not."""
    return f"{times[peer] / times[name]:.2f}x" if peer in times else "-"


def measure_training(device: torch.device, names: list[str], size: tuple[int, int], identities: int, rounds: int,
                     mode: str) -> list[list[str]]:
    """The re-ID training step (ReIDModel + identity and both triplet losses + AdamW), batch = identities x 8."""
    batch = identities * 8
    labels = torch.arange(batch, device=device) // 8
    infrared = (torch.arange(batch, device=device) % 8) >= 4
    images = torch.randn(batch, 3, *size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    criterion = ReIDLoss()
    functions, compile_seconds = {}, {}
    for name in names:
        model = ReleasedReID(name.removeprefix("released_"), identities) if name.startswith("released_") else \
            ReIDModel(name, identities, size)
        model = model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        forward = compile_model(model, resolved(mode), device)

        def step(forward=forward, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                output = forward(images, infrared)
            weighted_sum(criterion(output, labels, infrared), {}).backward()
            optimizer.step()

        started = time.perf_counter()
        for _ in range(3):
            step()
        compile_seconds[name] = time.perf_counter() - started
        functions[name] = step
    times = timed(functions, device, rounds, 1)
    return [[name, mode, f"{compile_seconds[name]:.0f}" if mode != "off" else "-", f"{batch / times[name]:.0f}",
             _ratio(times, "pvt_v2_b1", name), _ratio(times, "released_t1", name),
             "-" if (memory := peak_gib(functions[name], device)) is None else f"{memory:.2f}"] for name in names]


def measure_pipeline(size: tuple[int, int], batches: int) -> list[list[str]]:
    from reid.data import load_dataset, make_dataset
    from reid.data.transforms import train_pipelines
    from reid.engine.trainer import pipeline_rate
    from reid.settings import AugmentConfig

    root = Path(tempfile.gettempdir()) / "reid-bench-pipeline-llcm"
    if not root.is_dir():
        make_dataset("llcm", root, 40)
    dataset = SampleDataset(load_dataset("llcm", root).train(), train_pipelines(AugmentConfig(*size)), train=True)
    rows = []
    for workers in sorted({2, default_workers("cuda")}):
        loader = make_loader(dataset, batch_size=64, num_workers=workers, device="cuda")
        rows.append([str(workers), f"{pipeline_rate(loader, batches):.0f}"])
    return rows


# The driver: sections of measurements, each in a child process with what is left of the budget -------------
MEASURES = {"mixers": measure_mixers, "inference": measure_inference, "training": measure_training,
            "pipeline": measure_pipeline}


def plan(quick: bool, sweep: bool) -> list[tuple[str, list[str], list[tuple[str, dict]]]]:
    """Sections: (title, table header, measurements as (measure name, keyword arguments))."""
    size = (64, 32) if quick else (288, 144)
    rounds = 2 if quick else 20
    channels, mixer_batch = (16, 2) if quick else (128, 64)
    batch, identities = (4, 1) if quick else (64, 8)
    models = list(SWEEP_MODELS if sweep else CHECK_MODELS)
    compiled_modes = SWEEP_MODES[1:] if sweep else ("auto",)
    inference = ["backbone", "compile", "compile + first calls (s)", "images/s", "vs pvt_v2_b1 (same run)"]
    training = ["model", "compile", "compile + first steps (s)", "images/s", "vs pvt_v2_b1 (same run)",
                "vs released_t1 (same run)", "peak GiB"]
    sections = [
        ("Data pipeline (training transforms, batch 64)", ["workers", "images/s"],
         [("pipeline", {"size": size, "batches": 2 if quick else 20})]),
        (f"Token mixers, forward + backward (C={channels}, batch {mixer_batch})",
         ["H=W", "ours ms", "ours compiled ms", "released ms", "swin window ms", "compiled vs released",
          "eager vs released"],
         [("mixers", {"size": px, "batch": mixer_batch, "channels": channels, "rounds": rounds})
          for px in ((8,) if quick else (64, 128))]),
        (f"Inference at {size[0]}x{size[1]}, batch {batch}, eager", inference,
         [("inference", {"names": models, "size": size, "batch": batch, "rounds": rounds, "mode": "off"})]),
        (f"The re-ID training step at {size[0]}x{size[1]}, batch {identities * 8}, eager", training,
         [("training", {"names": models, "size": size, "identities": identities, "rounds": rounds,
                        "mode": "off"})]),
    ]
    if quick:
        return sections
    for mode in compiled_modes:
        sections.append((f"Inference at {size[0]}x{size[1]}, batch {batch}, compile {mode}", inference,
                         [("inference", {"names": [name], "size": size, "batch": batch, "rounds": rounds,
                                         "mode": mode}) for name in models]))
        sections.append((f"The re-ID training step at {size[0]}x{size[1]}, batch {identities * 8}, compile {mode}",
                         training, [("training", {"names": [name], "size": size, "identities": identities,
                                                  "rounds": rounds, "mode": mode})
                                    for name in models if not (name.startswith("released_") and mode != "auto")]))
    return sections


def run_child(measure: str, arguments: dict, device: str, limit: float) -> list[list[str]] | str:
    """One measurement in a fresh process (a cold compile cache, its own GPU memory); rows, or why none."""
    if limit < 5:
        return f"not run: the budget was spent ({measure} {arguments.get('names', arguments.get('size'))})"
    with tempfile.TemporaryDirectory() as cache:
        environment = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, __file__, "--child", json.dumps({"measure": measure, "device": device,
                                                                    "arguments": arguments})]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=environment)
        except subprocess.TimeoutExpired:
            return f"cut short after {limit:.0f} s (the budget's remainder): {measure} {arguments.get('names', '')}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("ROWS ")]
    if result.returncode or not lines:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return f"failed: {measure} {arguments.get('names', '')}: {last}"
    return json.loads(lines[-1][5:])


def child(spec: str) -> None:
    """The child side: run one measurement and print its rows as JSON."""
    request = json.loads(spec)
    device = torch.device(request["device"])
    torch.backends.cudnn.benchmark = True
    arguments = {key: tuple(value) if key == "size" and isinstance(value, list) else value
                 for key, value in request["arguments"].items()}
    if request["measure"] != "pipeline":
        arguments["device"] = device
    print("ROWS " + json.dumps(MEASURES[request["measure"]](**arguments)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (a smoke run)")
    parser.add_argument("--sweep", action="store_true", help="every peer, T2, every compile mode (hours)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run (default 7 min)")
    parser.add_argument("--out", type=Path, help="also write the markdown here, section by section")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    started = time.monotonic()
    budget = float("inf") if args.sweep else args.budget
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("")

    def emit(text: str) -> None:
        print(text, flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(text + "\n")

    emit(f"# {name}, torch {torch.__version__}, bf16 autocast, channels_last; budget {args.budget:.0f} s\n")
    results: dict[tuple[str, str, str], float] = {}  # (measure, mode, model) -> images/s
    for title, header, measurements in plan(args.quick, args.sweep):
        rows, notes = [], []
        for measure, arguments in measurements:
            outcome = run_child(measure, arguments, args.device, budget - (time.monotonic() - started))
            (rows.extend if isinstance(outcome, list) else notes.append)(outcome)
            if isinstance(outcome, list) and measure in ("inference", "training"):
                results |= {(measure, row[1], row[0]): float(row[3]) for row in outcome}
        emit(f"## {title}\n")
        if rows:
            emit(markdown_table(header, rows))
        for line in notes:
            emit(f"\n- {line}")
        emit(f"\n({time.monotonic() - started:.0f} s into the run)\n")
    emit(targets(results))
    emit(f"done in {time.monotonic() - started:.0f} s")


def targets(results: dict[tuple[str, str, str], float]) -> str:
    """The standing targets, from images/s of the sections (compiled models are measured in processes of their
    own, so those ratios are across processes)."""
    def ratio(kind: str, mode: str, name: str, peer: str, peer_mode: str) -> str:
        ours, theirs = results.get((kind, mode, name)), results.get((kind, peer_mode, peer))
        return f"{ours / theirs:.2f}x" if ours and theirs else "not measured"

    rows = [["training step: attnet_t1 vs pvt_v2_b1, auto", ">= 1.0x",
             ratio("training", "auto", "attnet_t1", "pvt_v2_b1", "auto")],
            ["training step: attnet_t1 auto vs the released T1 eager", ">= 3x",
             ratio("training", "auto", "attnet_t1", "released_t1", "off")],
            ["inference: attnet_t1 vs pvt_v2_b1, auto", ">= 1.0x",
             ratio("inference", "auto", "attnet_t1", "pvt_v2_b1", "auto")],
            ["inference: attnet_t1 vs pvt_v2_b1, eager", ">= 1.0x",
             ratio("inference", "off", "attnet_t1", "pvt_v2_b1", "off")]]
    return "## Targets\n\n" + markdown_table(["target", "wanted", "measured"], rows) + "\n"


if __name__ == "__main__":
    main()
