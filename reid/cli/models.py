"""``reid models``: the backbones, their size and cost, and whether the authors' weights are there and load."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reid.cli.common import command, console, group, progress
from reid.errors import problems_of, refuse
from reid.settings import parse_size

app = group("Backbones and weights.")


@command(app, "models")
def models_command(
        names: Annotated[list[str] | None, typer.Argument(metavar="[NAME]...", help="Backbones to list (default: the "
                                                                                   "paper's comparison set)")]
        = None,
        size: Annotated[str, typer.Option(metavar="HxW", help="Input size to check each backbone runs at")]
        = "288x144",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line, one per backbone")]
        = False,
        weights_dir: Annotated[Path, typer.Option(metavar="PATH", help="Where the authors' AttNet, ACmix and "
                                                                       "torchvision ResNet-50 weights are kept")]
        = Path("weights"),
        measure: Annotated[bool, typer.Option("--measure", help="Build every backbone to count parameters and MACs "
                                                                "and probe the size (seconds each), instead of "
                                                                "the recorded figures")] = False,
) -> None:
    """List backbones with their parameters, MACs at 224x224, whether they run at the re-ID input size, and
    whether the ImageNet weights the shipped configs expect of each are found (and load)."""
    from reid.catalogue import PAPER_BACKBONES, check_backbone, recorded_entry, weights_file, weights_note

    listed = names or list(PAPER_BACKBONES)
    refuse(problems_of(lambda: parse_size(size), *(lambda name=name: check_backbone(name) for name in listed)))
    probe = parse_size(size)

    def entry(name: str):
        weights = weights_file(name, weights_dir)
        if not measure and not isinstance(weights, Path) and (recorded := recorded_entry(name, probe, weights)):
            return recorded  # answered without building anything
        if not measure and isinstance(weights, Path) and (recorded := recorded_entry(name, probe, None)):
            from reid.models.pretrained import weights_status

            return replace(recorded, weights=weights_status(name, weights_dir))
        from reid.models.backbones import measured_entry

        return measured_entry(name, probe, weights_dir)

    table = None
    if not as_json:
        table = Table(title="Backbones (params with the ImageNet head; MACs of one 224x224 image)")
        for column in ("backbone", "params (M)", "GMACs @224", f"runs at {probe[0]}x{probe[1]}",
                       "ImageNet weights"):
            table.add_column(column, justify="right" if column in ("params (M)", "GMACs @224") else "left",
                             no_wrap=column == "backbone", overflow="fold")
    entries = []
    with progress() as bar:
        task = bar.add_task("listing backbones", total=len(listed))
        for name in listed:
            found = entry(name)
            entries.append(found)
            if as_json:
                typer.echo(json.dumps(found.to_dict()))  # one line per backbone, as soon as it is known
            else:
                table.add_row(*found.cells())
            bar.advance(task)
    if table is not None:
        console.print(table)
        if any(e.weights and e.weights.startswith(("missing", "does not load")) for e in entries):
            console.print(weights_note(entries, weights_dir))
