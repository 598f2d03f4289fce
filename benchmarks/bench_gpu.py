"""GPU speed in one run, as ratios side by side: token mixers, backbone inference, the full re-ID training step,
eager and each torch.compile mode, peak memory, and the data pipeline.

Peers measured in the same process, interleaved (see reid.profiling):
  ours      reid's AttNet / ATConv (channel-last tokens; the shifted multiply-add ATConv under torch.compile)
  released  tests/models/reference_attnet.py: a literal re-implementation of the authors' released network
            (NCHW, unfold, adaptive pooling), which loads their checkpoints and matches them to 1e-5
  timm      pvt_v2_b1/b2, resnet50, convnext_tiny, swin_tiny_patch4_window7_224 (and Swin's window attention)
The setting is the project's default on a GPU: bf16 autocast, channels_last, compile "auto" (CUDA graphs).

    python benchmarks/bench_gpu.py                 # on the GPU present; prints markdown tables for BENCHMARKS.md
    python benchmarks/bench_gpu.py --device cpu --quick    # a smoke run of the same code on a CPU
"""
from __future__ import annotations

import argparse
import sys
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
from reid.models.reid_model import ReIDModel  # noqa: E402
from reid.profiling import interleaved_medians  # noqa: E402
from reid.report import markdown_table  # noqa: E402

PEERS = ("pvt_v2_b1", "pvt_v2_b2", "resnet50", "convnext_tiny", "swin_tiny_patch4_window7_224")
COMPILE_MODES = ("off", "default", "max-autotune", "reduce-overhead")


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


def mixers_table(device: torch.device, sizes: list[int], batch: int, channels: int, rounds: int) -> str:
    """Forward + backward of one token mixer on a (B, C, H, W) map, ms; ratios against the released ATConv."""
    from timm.models.swin_transformer import WindowAttention, window_partition, window_reverse

    rows = []
    for size in sizes:
        ours, released = ATConv(channels).to(device), RefATConv(channels).to(device)  # speed only: own weights
        window = WindowAttention(channels, num_heads=4, window_size=7).to(device)
        compiled = compile_model(ours, "default", device) if device.type == "cuda" else ours
        maps = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
        padded = -size % 7

        def swin(maps=maps, window=window, padded=padded, size=size):
            tokens = nn.functional.pad(maps.permute(0, 2, 3, 1), (0, 0, 0, padded, 0, padded))
            side = size + padded
            out = window(window_partition(tokens, (7, 7)).view(-1, 49, channels)).view(-1, 7, 7, channels)
            return window_reverse(out, (7, 7), side, side)

        def step(module, maps=maps):
            def run():
                with autocast(device):
                    out = module(maps)
                out.float().square().mean().backward()
            return run

        times = timed({"ours": step(ours), "ours compiled": step(compiled), "released": step(released),
                       "swin window": step(swin)}, device, rounds, 2)
        rows.append([f"{size}x{size}", *(f"{1000 * times[k]:.2f}" for k in times),
                     f"{times['released'] / times['ours compiled']:.2f}x", f"{times['released'] / times['ours']:.2f}x"])
    return markdown_table(["H=W", "ours ms", "ours compiled ms", "released ms", "swin window ms",
                           "compiled vs released", "eager vs released"], rows)


def backbone(name: str, size: tuple[int, int], device: torch.device) -> nn.Module:
    if name.startswith("released_"):
        model = RefAttNet(f"attnet_{name.removeprefix('released_')}")
    else:
        model = create_backbone(name, size, num_classes=1000, check_size=False).model
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def inference_table(device: torch.device, names: list[str], size: tuple[int, int], batch: int, rounds: int,
                    modes: tuple[str, ...]) -> str:
    rows = []
    images = torch.randn(batch, 3, *size, device=device)
    for mode in modes:
        functions = {}
        for name in names:
            model = compile_model(backbone(name, size, device).eval(), mode, device)

            def infer(model=model):
                with torch.no_grad(), autocast(device):
                    model(images)

            functions[name] = infer
        times = timed(functions, device, rounds, 3)
        for name in names:
            rows.append([name, mode, f"{batch / times[name]:.0f}",
                         f"{times['pvt_v2_b1'] / times[name]:.2f}x" if "pvt_v2_b1" in times else "-"])
    return markdown_table(["backbone", "compile", "images/s", "vs pvt_v2_b1 (same mode)"], rows)


def training_table(device: torch.device, names: list[str], size: tuple[int, int], identities: int, rounds: int,
                   modes: tuple[str, ...]) -> str:
    """The re-ID training step (ReIDModel + identity and both triplet losses + AdamW), batch = identities x 8."""
    batch = identities * 8
    labels = torch.arange(batch, device=device) // 8
    infrared = (torch.arange(batch, device=device) % 8) >= 4
    images = torch.randn(batch, 3, *size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    criterion = ReIDLoss()
    rows = []
    for mode in modes:
        functions, memory = {}, {}
        for name in names:
            if name.startswith("released_"):
                if mode != "off":
                    continue
                model = _ReleasedReID(name.removeprefix("released_"), identities).to(device)
            else:
                model = ReIDModel(name, identities, size).to(device)
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            forward = compile_model(model, mode, device)

            def step(forward=forward, optimizer=optimizer):
                optimizer.zero_grad(set_to_none=True)
                with autocast(device):
                    output = forward(images, infrared)
                weighted_sum(criterion(output, labels, infrared), {}).backward()
                optimizer.step()

            functions[name] = step
        times = timed(functions, device, rounds, 3)
        for name in functions:
            memory[name] = peak_gib(functions[name], device)
        for name in functions:
            rows.append([name, mode, f"{batch / times[name]:.0f}",
                         f"{times['pvt_v2_b1'] / times[name]:.2f}x" if "pvt_v2_b1" in times else "-",
                         "-" if memory[name] is None else f"{memory[name]:.2f}"])
    return markdown_table(["model", "compile", "images/s", "vs pvt_v2_b1 (same mode)", "peak GiB"], rows)


class _ReleasedReID(nn.Module):
    """The released AttNet with the same pooled-feature BNNeck head, for the training-step comparison."""

    def __init__(self, variant: str, classes: int) -> None:
        super().__init__()
        self.backbone = RefAttNet(f"attnet_{variant}")
        width = self.backbone.norm.normalized_shape[0]
        self.bottleneck = nn.BatchNorm1d(width)
        self.classifier = nn.Linear(width, classes, bias=False)

    def forward(self, images, is_infrared=None):
        from reid.models.reid_model import ReIDOutput

        features = self.backbone.norm(self.backbone.forward_features(images).mean((2, 3)))
        bn = self.bottleneck(features)
        return ReIDOutput(features, bn, self.classifier(bn))


def pipeline_table(size: tuple[int, int], batches: int) -> str:
    from reid.data import load_dataset, make_dataset
    from reid.data.transforms import AugmentConfig, train_pipelines
    from reid.engine.trainer import pipeline_rate

    root = Path("benchmarks/out/pipeline-llcm")
    if not root.is_dir():
        make_dataset("llcm", root, 40)
    samples = load_dataset("llcm", root).train()
    dataset = SampleDataset(samples, train_pipelines(AugmentConfig(*size)), train=True)
    rows = []
    for workers in sorted({2, default_workers("cuda")}):
        loader = make_loader(dataset, batch_size=64, num_workers=workers, device="cuda")
        rows.append([str(workers), f"{pipeline_rate(loader, batches):.0f}"])
    return markdown_table(["workers", "images/s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    quick = args.quick
    rounds = 2 if quick else args.rounds
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {name}, torch {torch.__version__}, bf16 autocast, channels_last\n")
    channels, batch = (16, 2) if quick else (128, 64)
    print(f"## Token mixers, forward + backward (C={channels}, batch {batch})\n")
    print(mixers_table(device, [8] if quick else [16, 32, 64, 128], batch, channels, rounds), "\n", flush=True)
    size = (64, 32) if quick else (288, 144)
    names = ["attnet_t1", "released_t1", "pvt_v2_b1"] if quick else \
        ["attnet_t1", "attnet_t2", "released_t1", "released_t2", *PEERS]
    modes = ("off",) if quick else COMPILE_MODES
    batch = 4 if quick else 64
    print(f"## Inference at {size[0]}x{size[1]}, batch {batch}\n")
    print(inference_table(device, names, size, batch, rounds, modes), "\n", flush=True)
    identities = 1 if quick else 8
    print(f"## The re-ID training step at {size[0]}x{size[1]}, batch {identities * 8} ({identities} identities x 4 "
          f"visible + 4 infrared)\n")
    train_names = ["attnet_t1", "released_t1", "pvt_v2_b1"] if quick else \
        ["attnet_t1", "attnet_t2", "released_t1", *PEERS]
    print(training_table(device, train_names, size, identities, rounds, modes), "\n", flush=True)
    print("## Data pipeline (training transforms, batch 64)\n")
    print(pipeline_table(size, 2 if quick else 20))


if __name__ == "__main__":
    main()
