"""Comparing backbones under one recipe: train (or take checkpoints), evaluate, measure, tabulate, chart.

Every backbone gets the same config, data and seed. Every name (and, with checkpoints, every file) is checked
before any work starts. A comparison resumes where it stopped: finished trainings are kept, unfinished ones
continue from their last.pt, and evaluations are cached per checkpoint digest and number of trials. Speed and
memory are measured for all backbones together at the end, interleaved, so the numbers in one table share the
machine's state. comparison.json holds each backbone's evaluation in the report schema every command shares
(``reid.report``), with its size and speed.
"""
from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from reid.config import TrainConfig
from reid.data import load_dataset
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.evaluate import evaluate_dataset
from reid.engine.inference import Embedder
from reid.engine.runtime import resolve_device
from reid.engine.trainer import Trainer
from reid.errors import ReidError, refuse
from reid.io import atomic_write, atomic_write_text
from reid.losses import ReIDLoss, weighted_sum
from reid.metrics import RankResult
from reid.models.backbones import count_macs, count_parameters
from reid.profiling import interleaved_medians, peak_memory_mb
from reid.report import EvaluationReport, markdown_table
from reid.runs import comparison_problems, find_checkpoint, recipe_for


@dataclass
class ComparisonRow:
    """One backbone of a comparison: its evaluation, size and speed."""

    backbone: str
    input_size: tuple[int, int]
    params: int
    macs: int
    inference_images_per_second: float
    training_images_per_second: float
    training_peak_memory_mb: float | None  # CUDA only: a CPU process's peak resident set says too little
    report: EvaluationReport
    checkpoint: str
    note: str | None = None

    def to_dict(self) -> dict:
        """The row as comparison.json stores it: the shared report, and the rest beside it."""
        values = {key: value for key, value in asdict(self).items() if key != "report"}
        return values | {"input_size": list(self.input_size), "report": self.report.to_dict()}


def _finished(run: Path, epochs: int) -> bool:
    last = run / "last.pt"
    return last.is_file() and RunCheckpoint.load(last).epoch >= epochs


def _evaluate(checkpoint: RunCheckpoint, config: TrainConfig, dataset, trials: int, device) -> EvaluationReport:
    """Evaluation of a checkpoint, cached next to it by checkpoint digest and number of trials."""
    cache = checkpoint.path.parent / f"evaluation_{checkpoint.path.stem}.json"
    digest = checkpoint.digest
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("digest") == digest and saved.get("trials") == trials and saved.get("units") == "percent":
            report = EvaluationReport(saved["report"]["dataset"], saved["report"]["protocol"])
            report.results = {d: [_result_from_dict(r) for r in rows] for d, rows in saved["results"].items()}
            return report
    embedder = Embedder.from_checkpoint(checkpoint, device, batch_size=config.eval_batch_size,
                                        seq_len=config.seq_len, num_workers=config.num_workers)
    report = evaluate_dataset(embedder, dataset, trials=trials, trial=config.trial, metric=config.metric).report
    results = {d: [{"cmc": r.cmc.tolist(), "mAP": r.mAP, "mINP": r.mINP, "valid": r.num_valid_queries}
                   for r in rows] for d, rows in report.results.items()}
    atomic_write_text(cache, json.dumps({"digest": digest, "trials": trials, "units": "percent",
                                         "report": report.to_dict(), "results": results}))
    return report


def _result_from_dict(row: dict) -> RankResult:
    return RankResult(np.asarray(row["cmc"]), row["mAP"], row["mINP"], row["valid"])


def _speed_and_memory(models: dict[str, torch.nn.Module], sizes: dict[str, tuple[int, int]], device,
                      inference_batch: int = 8, training_batch: int = 16, rounds: int = 5
                      ) -> dict[str, tuple[float, float, float]]:
    """(inference images/s, training images/s, training-step peak memory MB) per backbone, measured together.

    Memory is measured on CUDA (the allocator's peak); on a CPU the process reuses memory freed by earlier steps,
    so its peak resident set grows by nothing and the column would mislead: it is None there."""
    criterion = ReIDLoss()
    labels = torch.arange(training_batch, device=device) // 4  # 4 images per identity, both modalities
    infrared = (torch.arange(training_batch, device=device) % 4) >= 2
    inference, training = {}, {}
    for name, model in models.items():
        images = torch.randn(inference_batch, 3, *sizes[name], device=device)
        trainee = copy.deepcopy(model).train()
        trainee.classifier = torch.nn.Linear(trainee.num_features, training_batch // 4, bias=False).to(device)
        optimizer = torch.optim.SGD(trainee.parameters(), lr=1e-4)
        batch = torch.randn(training_batch, 3, *sizes[name], device=device)
        model.eval()

        def infer(model=model, images=images):
            with torch.no_grad():
                model(images)

        def step(trainee=trainee, optimizer=optimizer, batch=batch):
            optimizer.zero_grad(set_to_none=True)
            weighted_sum(criterion(trainee(batch, infrared), labels, infrared), {}).backward()
            optimizer.step()

        inference[name], training[name] = infer, step
    infer_seconds = interleaved_medians(inference, rounds=rounds, warmup=1)
    train_seconds = interleaved_medians(training, rounds=max(2, rounds // 2), warmup=1)
    return {name: (inference_batch / infer_seconds[name], training_batch / train_seconds[name],
                   peak_memory_mb(training[name], device) if torch.device(device).type == "cuda" else None)
            for name in models}


def run_comparison(
        config: TrainConfig,
        backbones: Sequence[str],
        output_dir: str | Path,
        train: bool = True,
        checkpoints: str | Path | None = None,
        trials: int = 10,
        console: Console | None = None,
        command: str | None = None,
) -> list[ComparisonRow]:
    """Train (or take checkpoints of) each backbone, evaluate, measure, and write the comparison files (``command``:
    the command line that asked, recorded in them)."""
    output_dir = Path(output_dir)
    if not train and checkpoints is None:
        raise ReidError("give --train or --checkpoints DIR")
    refuse(comparison_problems(backbones, config, checkpoints))
    device = resolve_device(config.device)
    dataset = load_dataset(config.dataset, config.data_root, mode=config.sysu_mode)
    paths: dict[str, Path] = {}
    for backbone in backbones:
        if train:
            run = output_dir / backbone
            settings = recipe_for(config, backbone, run)
            if not _finished(run, settings.epochs):
                # a directory with a run stopped half-way continues; a fresh one starts
                Trainer(settings, resume=(run / "last.pt").is_file(), console=console).fit()
            paths[backbone] = run / "best.pt"
        else:
            paths[backbone] = find_checkpoint(Path(checkpoints), backbone)

    reports, models, sizes, notes = {}, {}, {}, {}
    for backbone, checkpoint in paths.items():
        if console:
            console.print(f"evaluating {backbone} ({checkpoint})")
        saved = RunCheckpoint.load(checkpoint)
        if saved.backbone != backbone:
            raise ReidError(f"{checkpoint} holds a {saved.backbone} model, not {backbone}")
        reports[backbone] = _evaluate(saved, config, dataset, trials, device)
        models[backbone] = saved.model(device)
        sizes[backbone] = models[backbone].input_size
        notes[backbone] = models[backbone].size_note
    if console:
        console.print("measuring speed and memory (all backbones in one run)")
    measured = _speed_and_memory(models, sizes, device)
    rows = []
    for backbone, checkpoint in paths.items():
        inference, training, memory = measured[backbone]
        rows.append(ComparisonRow(backbone, tuple(sizes[backbone]), count_parameters(models[backbone].backbone),
                                  count_macs(models[backbone].backbone, sizes[backbone]), round(inference, 2),
                                  round(training, 2), None if memory is None else round(memory, 1),
                                  reports[backbone], str(checkpoint), notes[backbone]))
    write_comparison(rows, output_dir, dataset.name, dataset.protocol.name, trials, command)
    return rows


def _flat(row: ComparisonRow) -> dict:
    flat = {"backbone": row.backbone, "input": f"{row.input_size[0]}x{row.input_size[1]}",
            "params_M": round(row.params / 1e6, 2), "GMACs": round(row.macs / 1e9, 2),
            "inference_img_s": row.inference_images_per_second, "training_img_s": row.training_images_per_second,
            "training_peak_MB": "-" if row.training_peak_memory_mb is None else row.training_peak_memory_mb}
    for direction, values in row.report.to_dict()["results"].items():
        flat |= {f"{direction}_{key}": value for key, value in values.items() if key != "std"}
        flat |= {f"{direction}_{key}_std": value for key, value in values.get("std", {}).items()}
    return flat


def write_comparison(rows: list[ComparisonRow], output_dir: Path, dataset: str, protocol: str, trials: int,
                     command: str | None = None) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    flat = [_flat(row) for row in rows]
    atomic_write_text(output_dir / "comparison.json", json.dumps(
        {"dataset": dataset, "protocol": protocol, "trials": trials, "command": command,
         "backbones": [row.to_dict() for row in rows]}, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(dict.fromkeys(key for row in flat for key in row)))
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(output_dir / "comparison.csv", buffer.getvalue())
    header = ["backbone", "input", "params_M", "GMACs", "inference_img_s", "training_img_s", "training_peak_MB"]
    directions = [d for d in ("ir2vis", "vis2ir") if any(d in row.report.results for row in rows)]
    metrics = [(d, key) for d in directions for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")]

    def cell(row: ComparisonRow, direction: str, key: str) -> str:
        if direction not in row.report.results:
            return "-"
        spread = row.report.std(direction)
        return f"{row.report.mean(direction)[key]:.2f}" + (f" ± {spread[key]:.2f}" if spread else "")

    table = [[flat_row[k] for k in header] + [cell(row, d, k) for d, k in metrics]
             for row, flat_row in zip(rows, flat, strict=True)]
    notes = [f"- {r.backbone}: {r.note}" for r in rows if r.note]
    if any(r.training_peak_memory_mb is None for r in rows):
        notes.append("- training_peak_MB is measured on CUDA only (a CPU process reuses freed memory, so its peak "
                     "resident set does not show a step's needs)")
    text = (f"# Backbones on {dataset} ({protocol} protocol, mean ± std of {trials} trials; metrics in %)\n\n"
            + (f"`{command}`\n\n" if command else "")
            + markdown_table(header + [f"{d}_{k}" for d, k in metrics], table) + "\n"
            + ("\n" + "\n".join(notes) + "\n" if notes else ""))
    atomic_write_text(output_dir / "comparison.md", text)
    _chart(rows, output_dir / "comparison.png", dataset)


def _chart(rows: list[ComparisonRow], path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    for direction, marker in (("ir2vis", "o"), ("vis2ir", "s")):
        points = [(r.inference_images_per_second, r.report.mean(direction)["mAP"], r.backbone) for r in rows
                  if direction in r.report.results]
        if not points:
            continue
        axis.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, s=60, label=f"{direction} mAP")
        for x, y, name in points:
            axis.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axis.set_xlabel("inference images/s (batch 8, this machine)")
    axis.set_ylabel("mAP (%)")
    axis.set_title(f"Accuracy vs throughput on {dataset}")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)
