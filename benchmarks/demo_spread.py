"""How far the demo's trained figures move between machines: the same `reid demo`, run under seeds and under the
floating-point differences that set one machine apart from another.

Training from scratch for 30 epochs is chaotic in float rounding: a different summation order anywhere (another
thread count, another CPU instruction set, another BLAS or library release) gives other weights after a few
steps and another mAP at the end, as another seed does. This script measures that spread, so the README can quote
the demo's own figures with an honest range and the README test can hold it. Each run is a fresh `reid demo`
process (the variables below only take effect when torch starts), on one shared synthetic dataset.

    python benchmarks/demo_spread.py                           # seeds 0-4, and seed 0 under three numerics
    python benchmarks/demo_spread.py --seeds 0,1 --numerics default,threads1
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# What differs between machines, as environment variables that torch reads when it starts.
NUMERICS = {
    "default": {},
    "threads1": {"OMP_NUM_THREADS": "1"},  # a machine with one core (or a different thread count)
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},  # a CPU without AVX-512: torch's own vectorised kernels
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},  # the same for oneDNN's convolutions and matmuls
}
PRINTED = re.compile(r"mAP untrained -> trained: ir2vis ([\d.]+)% -> ([\d.]+)%, vis2ir ([\d.]+)% -> ([\d.]+)%")


def demo(seed: int, numerics: str, data: Path, runs: Path) -> list[float]:
    """The four figures one `reid demo` prints: ir2vis untrained, trained, vis2ir untrained, trained."""
    reid = Path(sys.executable).with_name("reid")
    command = [str(reid), "demo", "--data-dir", str(data), "--output-dir", str(runs / f"{numerics}-{seed}"),
               "--set", f"seed={seed}"]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ | NUMERICS[numerics]
                            | {"COLUMNS": "200"})
    printed = PRINTED.search(result.stdout.replace("\n", " "))
    if result.returncode or not printed:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return [float(value) for value in printed.groups()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds run with default numerics")
    parser.add_argument("--numerics", default="threads1,avx2,onednn-avx2",
                        help=f"numerics seed 0 also runs under ({', '.join(NUMERICS)})")
    parser.add_argument("--work", type=Path, help="where data and runs go (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="demo-spread-"))
    data = work / "data"
    plan = [(int(seed), "default") for seed in args.seeds.split(",")]
    plan += [(0, name) for name in args.numerics.split(",") if name and name != "default"]
    print("| seed | numerics | ir2vis mAP untrained | ir2vis mAP trained | vis2ir mAP untrained | vis2ir mAP trained |")
    print("|---|---|---|---|---|---|")
    trained = {"ir2vis": [], "vis2ir": []}
    for seed, numerics in plan:
        figures = demo(seed, numerics, data, work / "runs")
        trained["ir2vis"].append(figures[1])
        trained["vis2ir"].append(figures[3])
        print(f"| {seed} | {numerics} | " + " | ".join(f"{value:.1f}" for value in figures) + " |", flush=True)
    print()
    for direction, values in trained.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{direction} trained mAP over {len(values)} runs: mean {statistics.mean(values):.1f}, std "
              f"{spread:.1f}, min {min(values):.1f}, max {max(values):.1f}")


if __name__ == "__main__":
    main()
