"""Does each loss term help? The demo's recipe trained with different losses, several seeds each, on CPU.

Every variant is the demo config (AttNet-XXS from scratch on the synthetic LLCM-layout dataset) with some keys
changed; each is trained once per seed and its last epoch evaluated with the protocol's 10 gallery trials (the
last epoch, not the best one, so no choice is made on the test set). The table gives mean +- std over seeds of
mAP in both directions, and the per-seed values, so a difference can be set against the seed-to-seed spread.

    python benchmarks/ablate_losses.py                                  # id vs id+triplet vs AGW's losses, 3 seeds
    python benchmarks/ablate_losses.py --variants id,id+triplet --seeds 0,1,2,3,4
    python benchmarks/ablate_losses.py --geometry RUNS/*/last.pt   # where the trained models' triplets stand
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from reid.config import load_config
from reid.data import make_dataset
from reid.engine.trainer import Trainer
from reid.report import markdown_table

# variant name -> the config keys it changes from the demo's recipe
VARIANTS = {
    "id": {"triplet_cross_weight": 0.0, "triplet_batch_weight": 0.0},
    "id+triplet": {},
    "id+triplet (cross only)": {"triplet_batch_weight": 0.0},
    "id+triplet (raw distances)": {"triplet_normalize": False},
    "id+triplet (after BNNeck)": {"triplet_features": "bnneck"},
    "agw": {"label_smoothing": 0.0, "metric_loss": "weighted", "triplet_normalize": False, "triplet_cross_weight": 0.0},
    "agw (normalised)": {"label_smoothing": 0.0, "metric_loss": "weighted", "triplet_cross_weight": 0.0},
    "agw (after BNNeck)": {"label_smoothing": 0.0, "metric_loss": "weighted", "triplet_cross_weight": 0.0,
                           "triplet_features": "bnneck"},
}


def run(variant: str, seed: int, data_root: Path, runs: Path, epochs: int | None) -> dict:
    overrides = dict(VARIANTS[variant], seed=seed, data_root=str(data_root),
                     output_dir=str(runs / f"{variant}-{seed}".replace(" ", "_")), eval_trials=10)
    config = load_config("configs/demo.yaml", **overrides, epochs=epochs)  # epochs=None keeps the demo's
    config = config.model_copy(update={"eval_every": config.epochs})  # evaluate the last epoch only
    report = Trainer(config, overwrite=True).fit()
    means = {direction: report.mean(direction)["mAP"] for direction in report.results}
    return {"variant": variant, "seed": seed, **{f"mAP_{d}": round(v, 2) for d, v in means.items()}}


def triplet_geometry(checkpoint: Path, data_root: Path | None = None, batches: int = 4) -> dict:
    """Where a trained model's triplets stand on training batches of its config's sampler: the share of batch-hard
    triplets (the losses' own miner) still inside the config's margin, and the mean cosine distance between the
    features they compare (pooled and after the BNNeck; features squeezed into a small cap of the sphere have a
    small one)."""
    import torch
    from pytorch_metric_learning import distances, miners

    from reid.data import load_dataset
    from reid.data.loader import SampleDataset
    from reid.data.sampler import CrossModalityIdentitySampler
    from reid.data.transforms import train_pipelines
    from reid.engine.checkpoint import RunCheckpoint

    run = RunCheckpoint.load(checkpoint)
    model, config = run.model().eval(), run.config
    samples = load_dataset(config.dataset, data_root or config.data_root).train()
    data = SampleDataset(samples, train_pipelines(config.augment()), config.seq_len, train=True)
    sampler = CrossModalityIdentitySampler(samples, config.batch_identities, config.batch_instances, 0, 0, 1)
    cosine = distances.LpDistance(normalize_embeddings=True)
    miner = miners.BatchHardMiner(distance=cosine)
    sums: dict[str, float] = defaultdict(float)
    for _, keys in zip(range(batches), sampler, strict=False):
        items = [data[key] for key in keys]
        pids = torch.tensor([item[1] for item in items])
        with torch.no_grad():
            output = model(torch.stack([item[0] for item in items]), torch.tensor([item[3] for item in items]))
        for name, features in (("pooled", output.pooled), ("bnneck", output.embeddings)):
            distance = cosine(features)
            anchors, positives, negatives = miner(features, pids)
            inside = distance[anchors, positives] - distance[anchors, negatives] + config.triplet_margin > 0
            off_diagonal = ~torch.eye(len(pids), dtype=torch.bool)
            sums[f"active_{name}"] += inside.float().mean().item() / batches
            sums[f"distance_{name}"] += distance[off_diagonal].mean().item() / batches
    return {key: round(value, 3) for key, value in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="id,id+triplet,agw", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    parser.add_argument("--data-root", type=Path, default=None, help="an LLCM-layout root (default: a new demo set)")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--geometry", type=Path, nargs="+", default=None,
                        help="only report triplet_geometry of these run checkpoints (last.pt)")
    args = parser.parse_args()
    if args.geometry:
        for checkpoint in args.geometry:
            print(json.dumps({"run": str(checkpoint), **triplet_geometry(checkpoint, args.data_root)}))
        return
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    with tempfile.TemporaryDirectory() as scratch:
        root = args.data_root or Path(scratch) / "demo-llcm"
        if args.data_root is None:
            make_dataset("llcm", root)
        results = []
        for seed in seeds:  # seeds outermost, so a cut-short run still compares every variant
            for variant in variants:
                result = run(variant, seed, root, args.runs or Path(scratch) / "runs", args.epochs)
                print(json.dumps(result), flush=True)
                results.append(result)

    rows = []
    for variant in variants:
        mine = [r for r in results if r["variant"] == variant]
        cells = [variant, ", ".join(f"{k}={v}" for k, v in VARIANTS[variant].items()) or "(the demo's recipe)"]
        for direction in ("ir2vis", "vis2ir"):
            values = [r[f"mAP_{direction}"] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} +- {spread:.1f}")
            cells.append(" / ".join(f"{v:.1f}" for v in values))
        rows.append(cells)
    print(markdown_table(["variant", "changes", "mAP ir2vis", "per seed", "mAP vis2ir", "per seed"], rows))


if __name__ == "__main__":
    main()
