"""The demo's training rate and a one-image query's latency on a CPU, alone and beside other busy processes, under
three thread settings measured in the same run:

* ``before``: what the project did before it sized its threads (torch's default pool of one thread per core, two
  loading workers, OpenMP threads that spin while they wait);
* ``omp1``: ``OMP_NUM_THREADS=1``, the usual advice for a busy machine;
* ``now``: the project's defaults (``reid.threads``: threads sized to the usable cores less those other processes
  run on, and ``default_workers``: every core but one).

Each measurement is a fresh process (OpenMP reads its settings when torch starts): AttNet-XXS at 96x48 trained as
the demo trains it (8 identities x 4 images x 2 modalities, AdamW, the demo's augmentation and loader), images per
second over the steps after three warm-up steps; then the median latency of embedding one image, as a search
does. "Busy" runs ``--competitors`` CPU-bound processes (plain Python loops) beside it, started before the
measured process. The variants run interleaved, ``--rounds`` times, and the table shows medians.

    python benchmarks/bench_cpu_contention.py [--seconds 20] [--competitors 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "before": {"env": {}, "reid_threads": False},
    "omp1": {"env": {"OMP_NUM_THREADS": "1"}, "reid_threads": False},
    "now": {"env": {}, "reid_threads": True},
}
SPIN = "while True: pass"


def child(variant: str, seconds: float, data: Path) -> dict:
    """One measurement, in this (fresh) process."""
    settings = VARIANTS[variant]
    import torch

    from reid.data import load_dataset
    from reid.data.loader import SampleDataset, make_loader
    from reid.data.sampler import CrossModalityIdentitySampler
    from reid.data.samples import relabel
    from reid.data.transforms import train_pipelines
    from reid.engine.inference import Embedder
    from reid.losses import ReIDLoss, weighted_sum
    from reid.models.reid_model import ReIDModel
    from reid.settings import AugmentConfig

    workers = min(4, len(os.sched_getaffinity(0)))  # the loader's default before it was planned
    if settings["reid_threads"]:
        from reid import threads

        plan = threads.plan()
        threads.apply(plan)
        workers = plan.workers
    samples = relabel(load_dataset("llcm", data).train())
    augment = AugmentConfig(96, 48, pad=4)
    sampler = CrossModalityIdentitySampler(samples, 8, 4, seed=0)
    loader = make_loader(SampleDataset(samples, train_pipelines(augment), train=True), batch_sampler=sampler,
                         num_workers=workers, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = ReIDModel("attnet_xxs", len({s.pid for s in samples}), (96, 48)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    criterion = ReIDLoss()
    seen, steps, start = 0, 0, None
    epoch = 0
    while start is None or time.perf_counter() - start < seconds:
        sampler.set_epoch(epoch)
        for images, pids, _, infrared in loader:
            loss = weighted_sum(criterion(model(images, infrared), pids, infrared), {})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == 3:
                start = time.perf_counter()
            elif steps > 3:
                seen += len(images)
            if start is not None and time.perf_counter() - start >= seconds:
                break
        epoch += 1
    rate = seen / (time.perf_counter() - start)
    embedder = Embedder(model.eval(), train_pipelines(augment)["vis"], "attnet_xxs", "bench")
    from reid.data.transforms import eval_pipeline

    embedder.pipeline = eval_pipeline(augment)
    from reid.data.images import load_image

    image = load_image(samples[0].path)
    latencies = []
    deadline = time.perf_counter() + seconds / 2
    while len(latencies) < 5 or (time.perf_counter() < deadline and len(latencies) < 200):
        begin = time.perf_counter()
        embedder.embed_images([image], [False])
        latencies.append(time.perf_counter() - begin)
    return {"images_per_second": rate, "query_ms": 1000 * statistics.median(latencies[2:]),
            "threads": torch.get_num_threads(), "workers": workers}


def measure(variant: str, seconds: float, data: Path) -> dict:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("OMP_", "GOMP_"))}
    environment |= VARIANTS[variant]["env"]
    result = subprocess.run([sys.executable, __file__, "--child", variant, "--seconds", str(seconds), "--data",
                             str(data)], capture_output=True, text=True, env=environment)
    if result.returncode:
        raise SystemExit(f"{variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training seconds measured per run")
    parser.add_argument("--competitors", type=int, default=2, help="CPU-bound processes beside a busy run")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each variant (medians)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds the competitors run before a busy run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds, args.data)))
        return
    from reid.data import make_dataset
    from reid.threads import usable_cores

    with tempfile.TemporaryDirectory() as folder:
        data = make_dataset("llcm", Path(folder) / "llcm", 40, seed=0)
        results: dict[tuple[str, str], list[dict]] = {}
        for machine in ("idle", "busy"):
            competitors = []
            if machine == "busy":
                competitors = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.competitors)]
                time.sleep(args.settle)
            try:
                for _ in range(args.rounds):
                    for variant in VARIANTS:  # interleaved: each round measures every variant once
                        results.setdefault((machine, variant), []).append(measure(variant, args.seconds, data))
            finally:
                for process in competitors:
                    process.kill()
                for process in competitors:
                    process.wait()
    print(f"{usable_cores()} usable cores; busy = {args.competitors} CPU-bound processes beside the run; "
          f"{args.seconds:.0f} s of training per run, medians of {args.rounds} round(s)\n")
    print("| machine | threads setting | threads x workers | training images/s | vs before | vs omp1 | "
          "one-image query (ms) | vs before | vs omp1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for machine in ("idle", "busy"):
        medians = {variant: {key: statistics.median(run[key] for run in results[(machine, variant)])
                             for key in ("images_per_second", "query_ms")} for variant in VARIANTS}
        for variant in VARIANTS:
            run = results[(machine, variant)][-1]
            rate, latency = medians[variant]["images_per_second"], medians[variant]["query_ms"]
            print(f"| {machine} | {variant} | {run['threads']} x {run['workers']} | {rate:.1f} | "
                  f"{rate / medians['before']['images_per_second']:.2f}x | "
                  f"{rate / medians['omp1']['images_per_second']:.2f}x | {latency:.1f} | "
                  f"{medians['before']['query_ms'] / latency:.2f}x | {medians['omp1']['query_ms'] / latency:.2f}x |")


if __name__ == "__main__":
    main()
