"""``reid evaluate`` and ``reid visualize``: a model under a dataset's official protocol, in numbers and pictures."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import (
    BatchOptions,
    DataRootOption,
    DatasetOption,
    DirectionChoice,
    ModelSource,
    RunOptions,
    SearchModeChoice,
    SearchModeOption,
    choice_option,
    command,
    console,
    dataset_problems,
    directions_of,
    group,
    load_embedder,
    note,
    open_dataset,
    progress,
    typed_command,
    value_of,
    writable,
)
from reid.errors import refuse

app = group("Evaluate and draw rank lists.")


def direction_problems(dataset: str, asked: list[str]) -> list[str]:
    from reid.data.registry import dataset_class

    reader = dataset_class(dataset)
    if not any(direction in reader.directions for direction in asked):
        return [f"{reader.title}'s official protocol has no {' or '.join(asked)} search (it evaluates "
                f"{' and '.join(reader.directions)}); nothing to evaluate"]
    return []


@command(app, "evaluate")
def evaluate_command(
        dataset: DatasetOption,
        data_root: DataRootOption,
        model: ModelSource,
        run: RunOptions,
        batches: BatchOptions,
        direction: Annotated[DirectionChoice, choice_option(DirectionChoice, help="Search direction")]
        = DirectionChoice.both,
        trials: Annotated[int | None, typer.Option(min=1, metavar="INT", help="Gallery trials (default: all the "
                                                                              "protocol has: 10 for LLCM and "
                                                                              "SYSU-MM01, 1 for VCM-HITSZ)")] = None,
        trial: Annotated[int, typer.Option(min=0, metavar="INT", help="RegDB split (0..9)")] = 0,
        rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")] = False,
        output: Annotated[Path | None, typer.Option(metavar="PATH", help="Write the metrics as JSON here, with each "
                                                                         "query's AP and top-10 (what reid serve "
                                                                         "--evaluation shows)")] = None,
        visualize: Annotated[Path | None, typer.Option(metavar="PATH", help="Also save a rank-list picture here")]
        = None,
        sysu_mode: SearchModeOption = SearchModeChoice.all,
        seq_len: Annotated[int, typer.Option(min=1, metavar="INT", help="Frames per tracklet (VCM-HITSZ)")] = 6,
        use_index: Annotated[bool, typer.Option(help="Search the gallery through an exact FAISS index")] = False,
) -> None:
    """Rank-1/5/10/20, mAP and mINP under the dataset's official protocol, in both search directions."""
    asked = directions_of(direction)
    problems = model.problems() + dataset_problems(dataset, data_root, trial) + direction_problems(dataset, asked)
    if use_index and rerank:
        problems.append("--use-index searches by cosine similarity without re-ranking: give one of --use-index and "
                        "--rerank")
    refuse(problems + writable(("--output", output), ("--visualize", visualize)))
    from reid.data.registry import dataset_class
    from reid.engine.evaluate import dataset_rank_lists, evaluate_dataset, evaluation_notes
    from reid.visualize import draw_rank_lists

    running = [d for d in asked if d in dataset_class(dataset).directions]
    embedder = load_embedder(model, run, batches, seq_len=seq_len)
    parsed = open_dataset(dataset, data_root, value_of(sysu_mode))
    for message in evaluation_notes(parsed, asked, trials):
        note(message)
    with progress() as bar:
        task = bar.add_task("embedding", total=None)
        evaluation = evaluate_dataset(embedder, parsed, running, trials or parsed.num_trials, trial, rerank,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total),
                                      use_index=use_index, per_query=output is not None)
    evaluation.report.command = typed_command()
    console.print(evaluation.report.table(title=f"{embedder.description} on {parsed.title}, %"))
    if output:
        evaluation.report.save_json(output)
        console.print(f"metrics: {output}")
    if visualize:
        draw_rank_lists(dataset_rank_lists(evaluation.embeddings, parsed, running, trial), visualize,
                        f"{embedder.description} on {parsed.title}")
        console.print(f"rank lists: {visualize}")


@command(app, "visualize")
def visualize_command(
        dataset: DatasetOption,
        data_root: DataRootOption,
        model: ModelSource,
        run: RunOptions,
        batches: BatchOptions,
        output: Annotated[Path, typer.Option(metavar="PATH", help="Where to save the picture (PNG)")]
        = Path("rank_lists.png"),
        queries: Annotated[int, typer.Option(min=1, metavar="INT", help="Queries per direction")] = 4,
        top_k: Annotated[int, typer.Option(min=1, metavar="INT", help="Gallery matches per query")] = 10,
        direction: Annotated[DirectionChoice, choice_option(DirectionChoice, help="Search direction")]
        = DirectionChoice.both,
        trial: Annotated[int, typer.Option(min=0, metavar="INT", help="RegDB split")] = 0,
        seed: Annotated[int, typer.Option(metavar="INT", help="Which queries are drawn")] = 0,
        sysu_mode: SearchModeOption = SearchModeChoice.all,
) -> None:
    """Draw queries with their top-k gallery matches (green correct, red wrong), both directions side by side."""
    asked = directions_of(direction)
    refuse(model.problems() + dataset_problems(dataset, data_root, trial) + direction_problems(dataset, asked)
           + writable(("--output", output)))
    from reid.engine.evaluate import dataset_rank_lists
    from reid.visualize import draw_rank_lists

    embedder = load_embedder(model, run, batches)
    parsed = open_dataset(dataset, data_root, value_of(sysu_mode), verify=False)
    directions = [d for d in asked if d in parsed.directions]
    panels = dataset_rank_lists(embedder, parsed, directions, trial, queries, top_k, seed)
    draw_rank_lists(panels, output, f"{embedder.description} on {parsed.title}")
    console.print(f"rank lists: {output}")
