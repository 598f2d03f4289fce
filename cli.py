"""The `reid` command line: thin commands that call into the `reid` package.

Run `reid --help` (or `python cli.py --help`) for the commands. Bad input (a missing file, an unknown backbone,
a malformed config) is reported on one line with exit code 2.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from reid.errors import ReidError

app = typer.Typer(
    name="reid",
    help="Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        import reid

        console.print(f"reid {reid.__version__}")
        raise typer.Exit()


@app.callback()
def root(
        version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                              help="Print the version and exit")] = False,
) -> None:
    """Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries."""


def command(group: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """Register a command whose user errors (ReidError) print one line and exit with code 2."""

    def register(function: Callable) -> Callable:
        @functools.wraps(function)
        def run(*args: Any, **inner: Any) -> Any:
            try:
                return function(*args, **inner)
            except ReidError as error:
                errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        group.command(name, **kwargs)(run)
        return function

    return register


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'288x144' -> (288, 144)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ReidError(f"{option} must look like HEIGHTxWIDTH (e.g. 288x144), got {text!r}") from None
    if height < 1 or width < 1:
        raise ReidError(f"{option} must be positive, got {text!r}")
    return height, width


def progress() -> Progress:
    """A progress bar (count, elapsed, ETA) on stderr; silent when stderr is not a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=errors, transient=True,
                    disable=not errors.is_terminal)


@command(app, "models")
def models_command(
        names: Annotated[
            list[str] | None, typer.Argument(help="Backbones to list (default: the paper's comparison set)")
        ] = None,
        size: Annotated[str, typer.Option(help="Input size (HxW) to check each backbone runs at")] = "288x144",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per backbone")] = False,
) -> None:
    """List backbones with their parameters, MACs at 224x224 and whether they run at the re-ID input size."""
    from reid.models.backbones import PAPER_BACKBONES, describe_backbone

    probe = parse_size(size)
    infos = []
    with progress() as bar:
        task = bar.add_task("measuring backbones", total=len(names or PAPER_BACKBONES))
        for name in names or PAPER_BACKBONES:
            infos.append(describe_backbone(name, probe))
            bar.advance(task)
    if as_json:
        for info in infos:
            console.print_json(json.dumps(dict(name=info.name, params=info.params, macs_224=info.macs_224,
                                               input_size=list(info.input_size), note=info.note)))
        return
    table = Table(title="Backbones (params with the ImageNet head; MACs of one 224x224 image)")
    for column in ("backbone", "params (M)", "GMACs @224", f"runs at {probe[0]}x{probe[1]}"):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    for info in infos:
        runs = "yes" if info.note is None else f"no: fixed {info.input_size[0]}x{info.input_size[1]}"
        table.add_row(info.name, f"{info.params / 1e6:.3f}", f"{info.macs_224 / 1e9:.3f}", runs)
    console.print(table)


data_app = typer.Typer(help="Check dataset roots and write synthetic datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetOption = Annotated[str, typer.Option("--dataset", "-d", help="llcm, vcm, sysu or regdb")]


@command(data_app, "check")
def data_check_command(
        dataset: DatasetOption,
        root: Annotated[str, typer.Option(help="Dataset root, as the authors distribute it")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object")] = False,
        images: Annotated[bool, typer.Option(help="Decode every image to find unreadable ones")] = True,
) -> None:
    """Validate a dataset root (index files, listed images, identities) and print its statistics."""
    from reid.data import DATASETS, DatasetError
    from reid.errors import ReidError

    if dataset not in DATASETS:
        raise ReidError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    parsed = DATASETS[dataset](root, strict=False)
    problems = list(parsed.problems)
    if images:
        from reid.data.images import image_problems

        files = list(parsed.all_files())
        with progress() as bar:
            task = bar.add_task("decoding images", total=len(files))
            problems += image_problems(files, lambda done: bar.advance(task, done))
    if problems:
        raise DatasetError(root, problems, show=len(problems))
    stats = parsed.statistics()
    if as_json:
        console.print_json(json.dumps(stats))
        return
    table = Table(title=f"{dataset} at {root} (query/gallery: {parsed.directions[0]}, trial 0)")
    for column in ("split", "modality", "ids", "images / tracklets", "frames", "cameras"):
        table.add_column(column, justify="left" if column in ("split", "modality") else "right")
    for split in ("train", "query", "gallery"):
        for modality, entry in stats[split].items():
            table.add_row(split, modality, str(entry["ids"]), str(entry.get("images", entry.get("tracklets"))),
                          str(entry.get("frames", "")), str(entry["cameras"]))
    console.print(table)
    console.print(f"[green]ok[/]: {root} is a usable {dataset} root")


@command(data_app, "make-demo")
def data_make_demo_command(
        layout: Annotated[str, typer.Option(help="llcm, vcm, sysu or regdb")],
        out: Annotated[str, typer.Option(help="Dataset root to create")],
        ids: Annotated[int | None, typer.Option(help="Number of identities (default: trains in minutes)")] = None,
        seed: Annotated[int, typer.Option(help="Random seed")] = 0,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing root")] = False,
) -> None:
    """Write a small synthetic dataset in a real dataset's exact layout (for tests, demos, pipelines)."""
    from reid.data.synthetic import make_dataset

    with console.status(f"writing a synthetic {layout} dataset to {out}"):
        root = make_dataset(layout, out, ids, seed, overwrite)
    console.print(f"wrote {root} ({layout} layout); check it with: reid data check --dataset {layout} --root {root}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
