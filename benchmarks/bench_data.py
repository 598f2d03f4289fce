"""Training input pipeline throughput against the model it feeds, measured in the same run.

Data side: the cross-modality sampler's batches through SampleDataset (PIL decode, albumentations: resize to
288x144, pad + crop, flip, CAJ channel augmentation, normalise, random erasing) and the DataLoader's collate, in
images per second, with the default worker count and with none. Model side: AttNet-T1's training step (forward,
backward, AdamW) at batch 16 and 288x144. The data side must be at least 3x faster, so data never starves
the model.

    python benchmarks/bench_data.py [--batches 30]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from reid.data import load_dataset, make_dataset
from reid.data.loader import SampleDataset, default_workers, make_loader
from reid.data.sampler import CrossModalityIdentitySampler
from reid.data.transforms import train_pipelines
from reid.models.backbones import create_backbone
from reid.profiling import interleaved_medians
from reid.report import markdown_table
from reid.settings import AugmentConfig


def loader_rate(samples, workers: int, batches: int) -> float:
    dataset = SampleDataset(samples, train_pipelines(AugmentConfig(288, 144)), train=True)
    sampler = CrossModalityIdentitySampler(samples, identities=8, instances=4)
    loader = make_loader(dataset, batch_sampler=sampler, num_workers=workers)
    count, start, seen = 0, None, 0
    while count < batches + 2:
        sampler.set_epoch(count)
        for images, *_ in loader:
            count += 1
            if count == 2:  # workers started and warm
                start = time.perf_counter()
            elif count > 2:
                seen += len(images)
            if count >= batches + 2:
                break
    return seen / (time.perf_counter() - start)


def training_rate(batch: int, rounds: int) -> float:
    model = create_backbone("attnet_t1", (288, 144), num_classes=100, check_size=False).model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, labels = torch.randn(batch, 3, 288, 144), torch.randint(0, 100, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return batch / interleaved_medians({"step": step}, rounds=rounds, warmup=1)["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        root = make_dataset("llcm", Path(folder) / "llcm", 60, seed=0)
        samples = load_dataset("llcm", root).train()
        workers = default_workers()
        rates = {f"data pipeline, {workers} workers": loader_rate(samples, workers, args.batches),
                 "data pipeline, in the main process": loader_rate(samples, 0, args.batches // 3)}
    model = training_rate(16, 4)
    rows = [[name, f"{rate:.1f}", f"{rate / model:.1f}x"] for name, rate in rates.items()]
    rows.append(["AttNet-T1 training step (batch 16)", f"{model:.1f}", "1.0x"])
    print(f"torch {torch.__version__}, {args.threads} threads, CPU, 288x144\n")
    print(markdown_table(["stage", "images/s", "vs training step"], rows))


if __name__ == "__main__":
    main()
