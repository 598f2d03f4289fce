"""Token-mixer latency and peak memory on CPU: ATConv against attention, at C=128, batch 4, H=W in 14..112.

Peers are timm's own modules on the same channel-last tokens (B, H, W, C):
  global     timm.layers.Attention (scaled_dot_product_attention over all H*W tokens), 4 heads
  window     Swin's WindowAttention, window 7, with its partition and reverse, 4 heads
  sr         PVTv2's spatial-reduction attention, sr_ratio 4 (its setting at C=128), 2 heads
  atconv     reid.models.ATConv.forward_tokens (as AttNet runs it)
Latency: medians of interleaved runs in one process. Peak memory: a fresh subprocess per case reports the
growth of peak RSS over one forward (so the allocator state of one case cannot hide another's).

    python benchmarks/bench_token_mixers.py [--plot benchmarks/out/token_mixers.png]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from reid.profiling import interleaved_medians
from reid.report import markdown_table

MIXERS = ("atconv", "window", "sr", "global")


def build(name: str, dim: int, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable mixing (B, H, W, C) tokens with the named token mixer."""
    from timm.layers import Attention
    from timm.models.pvt_v2 import Attention as SpatialReductionAttention
    from timm.models.swin_transformer import WindowAttention, window_partition, window_reverse

    from reid.models import ATConv

    if name == "atconv":
        module: nn.Module = ATConv(dim).eval()
        return module.forward_tokens
    if name == "global":
        module = Attention(dim, num_heads=4, qkv_bias=True).eval()
        return lambda x: module(x.flatten(1, 2)).view_as(x)
    if name == "window":
        module = WindowAttention(dim, num_heads=4, window_size=7).eval()

        def window(x: torch.Tensor) -> torch.Tensor:
            windows = window_partition(x, (7, 7)).view(-1, 49, dim)
            return window_reverse(module(windows).view(-1, 7, 7, dim), (7, 7), size, size)

        return window
    if name == "sr":
        module = SpatialReductionAttention(dim, num_heads=2, sr_ratio=4).eval()
        return lambda x: module(x.flatten(1, 2), [size, size]).view_as(x)
    raise ValueError(name)


def peak_memory_mb(name: str, dim: int, size: int, batch: int) -> float:
    """Peak RSS growth (MB) of one forward, measured in a fresh interpreter."""
    code = f"""
import torch, sys, json
sys.path.insert(0, {str(Path(__file__).parent)!r})
from bench_token_mixers import build
torch.set_num_threads(2)
mixer = build({name!r}, {dim}, {size})
x = torch.randn({batch}, {size}, {size}, {dim})
with torch.inference_mode():  # warm up libraries on a small input, so the measured run allocates only its own
    build({name!r}, {dim}, 14)(torch.randn(1, 14, 14, {dim}))
def field(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
before = field("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
with torch.inference_mode():
    mixer(x)
print(field("VmHWM") - before)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sizes", default="14,28,56,112")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", default="benchmarks/out/token_mixers.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    results: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in MIXERS}
    rows = []
    for size in map(int, args.sizes.split(",")):
        x = torch.randn(args.batch, size, size, args.dim)
        mixers = {name: build(name, args.dim, size) for name in MIXERS}
        with torch.inference_mode():
            seconds = interleaved_medians({n: (lambda m=m, x=x: m(x)) for n, m in mixers.items()}, rounds=args.rounds)
        for name in MIXERS:
            memory = peak_memory_mb(name, args.dim, size, args.batch)
            results[name][size] = (seconds[name], memory)
            rows.append([name, f"{size}x{size}", f"{seconds[name] * 1e3:.2f}", f"{memory:.0f}",
                         f"{seconds[name] / seconds['atconv']:.2f}x"])
        print(f"done {size}x{size}", file=sys.stderr, flush=True)

    print(f"torch {torch.__version__}, {args.threads} threads, CPU, C={args.dim}, batch {args.batch}\n")
    print(markdown_table(["mixer", "H x W", "ms", "peak MB", "time / ATConv time"], rows))
    print("\nATConv speed-up over window attention: " + ", ".join(
        f"{s}x{s}: {results['window'][s][0] / results['atconv'][s][0]:.2f}x" for s in results["atconv"]))

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for name in MIXERS:
            sizes = sorted(results[name])
            left.plot(sizes, [results[name][s][0] * 1e3 for s in sizes], marker="o", label=name)
            right.plot(sizes, [max(results[name][s][1], 0.1) for s in sizes], marker="o", label=name)
        for axis, label in ((left, "latency (ms)"), (right, "peak memory growth (MB)")):
            axis.set_xscale("log", base=2)
            axis.set_xticks(sorted(results["atconv"]), [str(s) for s in sorted(results["atconv"])])
            axis.set_yscale("log")
            axis.set_xlabel("H = W")
            axis.set_ylabel(label)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
        figure.suptitle(f"Token mixers, C={args.dim}, batch {args.batch}, {args.threads} CPU threads")
        figure.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=120)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
