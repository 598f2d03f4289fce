"""The end-to-end demo: synthetic data -> untrained baseline -> training -> evaluation -> FAISS gallery -> query.

Every stage writes what a user looks at into the run directory: best.pt, last.pt, metrics.csv, curves.png,
metrics.json (with the command, and each query's AP and top-10 for ``reid serve --evaluation``), rank_lists.png
(both directions, from the evaluation's own embeddings), query.png and gallery/. Running the demo again keeps the
previous complete demo run as ``<run>.previous`` and trains afresh, so no file of one run is ever mixed with
another's; an interrupted demo run is trained over.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from reid.config import TrainConfig
from reid.data import load_dataset, make_dataset
from reid.data.registry import synthetic_layout
from reid.data.transforms import eval_pipeline
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.evaluate import dataset_rank_lists, evaluate_dataset
from reid.engine.galleries import build_gallery
from reid.engine.inference import Embedder
from reid.engine.runtime import resolve_device
from reid.engine.trainer import Trainer
from reid.errors import refuse
from reid.index import IndexSettings, SearchHit
from reid.models.reid_model import ReIDModel
from reid.report import EvaluationReport
from reid.retrieval import RankList
from reid.runs import RunDirectory, demo_problems, demo_run
from reid.visualize import draw_rank_lists

DEMO_DATASET = "llcm"
DEMO_TRIALS = 10


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and where it wrote it."""

    untrained: EvaluationReport
    trained: EvaluationReport
    query_hits: list[SearchHit]
    run: Path

    def map_change(self) -> dict[str, tuple[float, float]]:
        """mAP (%) untrained -> trained, per direction."""
        return {d: (self.untrained.mean(d)["mAP"], self.trained.mean(d)["mAP"]) for d in self.trained.results}


def run_demo(config: TrainConfig, console: Console, num_ids: int | None = None,
             command: str | None = None) -> DemoResult:
    """Run the five stages with ``config`` (an LLCM-layout experiment; its data_root is made when absent).

    Args:
        config: The training config; ``data_root`` and ``output_dir`` say where the data and the run go.
        console: Where the tables and stage lines go.
        num_ids: Identities of the synthetic dataset when it is made (default: the reader's own).
        command: The command line that asked, recorded in metrics.json.
    """
    root, run = Path(config.data_root), Path(config.output_dir)
    refuse(demo_problems(config))
    device = resolve_device(config.device)
    if synthetic_layout(root) != DEMO_DATASET:  # new or empty: refuse() above let nothing else through
        with console.status(f"1/5 writing the synthetic LLCM-layout dataset to {root}"):
            make_dataset(DEMO_DATASET, root, num_ids)
    console.print(f"1/5 dataset: {root} (LLCM layout, synthetic)")
    dataset = load_dataset(DEMO_DATASET, root)
    pipeline = eval_pipeline(config.augment())

    torch.manual_seed(config.seed)
    untrained_model = ReIDModel(config.backbone, 0, config.input_size).to(device).eval()
    untrained = Embedder(untrained_model, pipeline, config.backbone, f"untrained {config.backbone}", device=device)
    before = evaluate_dataset(untrained, dataset, trials=DEMO_TRIALS).report
    console.print(before.table(title=f"2/5 untrained {config.backbone} (random weights), {DEMO_TRIALS} trials, %"))

    overwrite = _make_room(run, config, console)
    console.print(f"3/5 training {config.backbone} for {config.epochs} epochs on {device} -> {run}")
    Trainer(config, console=console, overwrite=overwrite).fit()
    checkpoint = RunCheckpoint.load(run / "best.pt")
    trained = Embedder.from_checkpoint(checkpoint, device)
    evaluation = evaluate_dataset(trained, dataset, trials=DEMO_TRIALS, per_query=True)  # for reid serve
    evaluation.report.command = command
    evaluation.report.save_json(run / "metrics.json")
    console.print(evaluation.report.table(title=f"4/5 trained {config.backbone} (best.pt), {DEMO_TRIALS} trials, %"))
    draw_rank_lists(dataset_rank_lists(evaluation.embeddings, dataset, dataset.directions, queries=6),
                    run / "rank_lists.png", f"{config.backbone} on synthetic LLCM")

    split = dataset.test_split("ir2vis", 0)
    # both sides of the search, so that `reid serve` over it can hop from an infrared query to the visible side and
    # back: the visible gallery of ir2vis and the infrared one of vis2ir
    samples = list(dict.fromkeys(split.gallery + dataset.test_split("vis2ir", 0).gallery))
    gallery = build_gallery(trained, samples, IndexSettings(type="flat"), source={"dataset": DEMO_DATASET})
    gallery.save(run / "gallery")
    query = split.query[0]
    # the LLCM protocol hides the query's identity on the query's own camera; a gallery search does not know the
    # query's identity, so, as a deployment would, it leaves the query's whole camera out
    hits = gallery.search(evaluation.embeddings.of([query]).numpy(), 10, modality="vis",
                          exclude_camids=[query.camid])[0]
    sides = gallery.counts_by_modality()
    table = Table(title=f"5/5 FAISS gallery ({sides['vis']} visible, {sides['ir']} infrared images): infrared query "
                        f"id {query.pid} against the visible side, camera {query.camid} left out")
    for column in ("rank", "score", "pid", "camid", "match"):
        table.add_column(column, justify="right")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", str(hit.pid), str(hit.camid),
                      "[green]yes[/]" if hit.pid == query.pid else "[red]no[/]")
    console.print(table)
    draw_rank_lists({"infrared query -> visible gallery (FAISS)": [
        RankList(query, [hit.sample() for hit in hits], [hit.score for hit in hits])]}, run / "query.png",
        "FAISS query")
    return DemoResult(before, evaluation.report, hits, run)


def _make_room(run: Path, config: TrainConfig, console: Console) -> bool:
    """Before training: move a previous complete demo run aside (to ``<run>.previous``, replacing only a demo run
    there); returns whether an interrupted demo run is there to train over."""
    if not demo_run(RunDirectory(run), config):
        return False
    if not (run / "metrics.json").is_file():
        return True  # a demo that stopped before its end: nothing of it is worth keeping
    previous = run.with_name(run.name + ".previous")
    if demo_run(RunDirectory(previous), config):
        shutil.rmtree(previous)
    run.rename(previous)  # fails, rather than replaces, if something else is there (demo_problems said so)
    console.print(f"the previous demo run is kept in {previous}")
    return False
