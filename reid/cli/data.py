"""``reid data check`` and ``reid data make-demo``: validate a dataset root, write a synthetic one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reid.cli.common import DataRootOption, DatasetOption, _dataset_name, command, console, group, progress
from reid.data.registry import dataset_help

app = group("Check dataset roots and write synthetic datasets.", name="data")


@command(app, "check")
def data_check_command(
        dataset: DatasetOption,
        root: DataRootOption,
        as_json: Annotated[bool, typer.Option("--json", help="Print the statistics (or the problems) as one JSON "
                                                             "object")] = False,
        images: Annotated[bool, typer.Option(help="Decode every image to find unreadable ones")] = True,
) -> None:
    """Validate a dataset root (index files, listed images, identities) and print its statistics."""
    from reid.data import DatasetError, load_dataset
    from reid.data.images import image_problems

    try:
        parsed = load_dataset(dataset, root, strict=False)
    except DatasetError as error:
        if as_json:
            typer.echo(json.dumps({"dataset": dataset, "root": str(root), "ok": False, "problems": error.problems}))
        raise
    problems = list(parsed.problems)
    if images:
        files = list(parsed.all_files())
        with progress() as bar:
            task = bar.add_task("decoding images", total=len(files))
            problems += image_problems(files, lambda done: bar.advance(task, done))
    if problems:
        if as_json:
            typer.echo(json.dumps({"dataset": dataset, "root": str(root), "ok": False, "problems": problems}))
        raise DatasetError(root, problems, show=len(problems))
    stats = parsed.statistics()
    if as_json:
        typer.echo(json.dumps(stats | {"root": str(root), "ok": True}))
        return
    table = Table(title=f"{parsed.title} at {root} (query/gallery: {parsed.directions[0]}, trial 0)")
    for column in ("split", "modality", "ids", "images / tracklets", "frames", "cameras"):
        table.add_column(column, justify="left" if column in ("split", "modality") else "right")
    for split in ("train", "query", "gallery"):
        for modality, entry in stats[split].items():
            table.add_row(split, modality, str(entry["ids"]), str(entry.get("images", entry.get("tracklets"))),
                          str(entry.get("frames", "")), str(entry["cameras"]))
    console.print(table)
    console.print(f"[green]ok[/]: {escape(str(root))} is a usable {parsed.title} root")


@command(app, "make-demo")
def data_make_demo_command(
        layout: Annotated[str, typer.Option(metavar="DATASET", callback=_dataset_name,
                                            help=f"Whose layout to write: {dataset_help()}")],
        out: Annotated[Path, typer.Option(metavar="PATH", help="Dataset root to create")],
        ids: Annotated[int | None, typer.Option(min=4, metavar="INT", help="Number of identities (default: trains "
                                                                           "in minutes)")] = None,
        seed: Annotated[int, typer.Option(metavar="INT", help="Random seed")] = 0,
        overwrite: Annotated[bool, typer.Option(help="Replace a synthetic dataset written there before (never "
                                                     "anything else)")] = False,
) -> None:
    """Write a small synthetic dataset in a real dataset's exact layout (for tests, demos, pipelines)."""
    from reid.data import make_dataset

    with console.status(f"writing a synthetic {layout} dataset to {out}"):
        made = make_dataset(layout, out, ids, seed, overwrite)
    console.print(f"wrote {made} ({layout} layout); check it with: reid data check --dataset {layout} --root {made}")
