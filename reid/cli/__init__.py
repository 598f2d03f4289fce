"""The `reid` command line: thin commands that call into the `reid` package.

Run `reid --help` (or `python -m reid --help`) for the commands. One module per command group, joined here:
``models``, ``data`` (``reid data ...``), ``train`` (train, compare, pretrain, demo), ``evaluate`` (evaluate,
visualize), ``index`` (``reid index ...``), ``serve``, ``export`` (export, extract); ``common`` holds what they share.
Bad input (a missing file, an unknown backbone, a malformed config) is reported with one line per problem and exit
code 2, before torch is loaded; Ctrl-C and SIGTERM stop a long command with how to continue it (exit codes 130 and
143).
"""
from __future__ import annotations

from typing import Annotated

import typer

from reid.cli import data, evaluate, export, index, models, serve, train
from reid.cli.common import OneLineErrors, console

app = typer.Typer(
    name="reid",
    cls=OneLineErrors,
    help="Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
for module in (models, data, train, evaluate, index, serve, export):
    app.add_typer(module.app)


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
