"""What the commands share: output, one-line errors, progress, choices, shared options and option groups.

An option shared by several commands is declared once, as an ``Annotated`` alias (``DatasetOption``) or as a field
of a small option group: a frozen dataclass whose fields are options (``ModelSource``, ``RunOptions``,
``BatchOptions``, ``SampleOptions``). A command takes a group as one parameter; ``command`` spreads its fields
over the command line, rebuilds the group for the call, and refuses, where the command is declared, a field whose
name is also one of the command's own options or another group's. Everything here is typer's public API
(``typer.Typer``, ``typer.Option``, ``typer.Exit``, ``typer.TyperException``) and Python's ``inspect``.

Nothing heavy is imported here: a command checks everything it can (options, files, names, configs) before it
imports torch, and reports every problem at once, one line each.
"""
from __future__ import annotations

import functools
import inspect
import os
import shlex
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperGroup

from reid.data.registry import DATASETS, dataset_help
from reid.data.samples import DIRECTIONS, MODALITIES, Split
from reid.errors import ReidError, problems_in, refuse
from reid.index.settings import INDEX_TYPES
from reid.io import directory, regular_file
from reid.settings import AMP_MODES, COMPILE_MODES, DEVICES, ENGINES, parse_size

# Piped or captured output has no terminal width; rich would then cut tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the terminal width
invoked: list[str] = []  # the arguments of this invocation, as typed (or as a test passed them)


def typed_command() -> str:
    """The command line that is running, for reports (``reid evaluate ... --output m.json``)."""
    return shlex.join(["reid", *invoked])


def say_error(error: ReidError) -> None:
    """Every problem of an error on a line of its own."""
    for problem in problems_in(error):
        errors.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    errors.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


class OneLineErrors(TyperGroup):
    """The root command group (given to ``typer.Typer(cls=...)``): a usage error (an unknown option, a value that
    is not one of the choices) is one line on stderr and exit code 2, like the commands' own errors, instead of a
    framed block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        invoked[:] = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # click's usage errors
            if not standalone_mode:
                raise
            if type(error).__name__ == "NoArgsIsHelpError":
                error.show()
            else:
                context = getattr(error, "ctx", None)
                hint = f" (see '{context.command_path} --help')" if context is not None else ""
                message = error.format_message().replace("Value error, ", "")  # typer checks choices with pydantic
                typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("aborted", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


def group(help: str, name: str | None = None) -> typer.Typer:
    """A group of commands (``reid index ...``) or, without a name, commands joined into the root."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                       pretty_exceptions_enable=False)


# Choices ----------------------------------------------------------------------------------------------------------
def choice(name: str, values: Iterable[str]) -> type[Enum]:
    """A command-line choice (typer reads choices from an Enum) of the library's values."""
    return Enum(name, {value: value for value in values}, type=str)


def choice_option(kind: type[Enum], *flags: str, help: str, **settings: Any) -> Any:
    """An option over ``kind``'s values: listed as its metavar when short, in the help otherwise (so no choice is
    broken across lines at 80 columns)."""
    values = [member.value for member in kind]
    if len("|".join(values)) <= 16:
        return typer.Option(*flags, metavar="|".join(values), help=help, **settings)
    return typer.Option(*flags, metavar="CHOICE", help=f"{help} ({', '.join(values)})", **settings)


def value_of(option: Any) -> Any:
    """A plain value for the library: an Enum choice's value, anything else as it is."""
    return option.value if isinstance(option, Enum) else option


DeviceChoice = choice("DeviceChoice", DEVICES)
AmpChoice = choice("AmpChoice", AMP_MODES)
CompileChoice = choice("CompileChoice", COMPILE_MODES)
ModalityChoice = choice("ModalityChoice", MODALITIES)
DirectionChoice = choice("DirectionChoice", (*DIRECTIONS, "both"))
IndexTypeChoice = choice("IndexTypeChoice", INDEX_TYPES)
SearchModeChoice = choice("SearchModeChoice", ("all", "indoor"))
EngineChoice = choice("EngineChoice", ENGINES)


def directions_of(direction: Enum) -> list[str]:
    return list(DIRECTIONS) if direction.value == "both" else [direction.value]


# Option groups ----------------------------------------------------------------------------------------------------
def option_group(cls: type) -> type:
    """Mark a class as an option group: a frozen dataclass whose fields are a command's options."""
    cls = dataclass(frozen=True)(cls)
    cls.option_group = True
    return cls


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and is_dataclass(annotation) and getattr(annotation, "option_group", False)


def command(app: typer.Typer, name: str, **settings: Any) -> Callable:
    """Register ``function`` as the command ``name`` of ``app``.

    Parameters typed as an option group become the group's fields; a field named like one of the command's own
    options (or another group's field) is refused here, when the command is declared, naming both. A ReidError
    prints each of its problems on one line and exits with code 2; a stop (Ctrl-C, SIGTERM) prints how to continue
    and exits with 130 or 143.
    """

    def register(function: Callable) -> Callable:
        hints = typing.get_type_hints(function, include_extras=True)
        groups: dict[str, type] = {}
        owners: dict[str, str] = {}
        parameters: list[inspect.Parameter] = []

        def add(parameter: str, annotation: Any, default: Any, owner: str) -> None:
            if parameter in owners:
                raise TypeError(f"reid {name}: the option --{parameter.replace('_', '-')} of {owner} clashes with "
                                f"the one of {owners[parameter]}; rename one of them, or take the shared one")
            owners[parameter] = owner
            parameters.append(inspect.Parameter(parameter, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                annotation=annotation))

        for parameter in inspect.signature(function).parameters.values():
            annotation = hints[parameter.name]
            if _is_group(annotation):
                groups[parameter.name] = annotation
                group_hints = typing.get_type_hints(annotation, include_extras=True)
                for field in fields(annotation):
                    add(field.name, group_hints[field.name], field.default, annotation.__name__)
            else:
                add(parameter.name, annotation, parameter.default, f"reid {name} itself")

        @functools.wraps(function)
        def run(**values: Any) -> Any:
            from reid.engine.stop import Stopped

            problems = [problem for parameter, value in values.items() for problem in value_problems(parameter, value)]
            if problems:
                say_error(ReidError(*problems))
                raise typer.Exit(2)
            for parameter, kind in groups.items():
                values[parameter] = kind(**{field.name: values.pop(field.name) for field in fields(kind)})
            try:
                return function(**values)
            except ReidError as error:
                say_error(error)
                raise typer.Exit(2) from None
            except Stopped as stop:
                errors.print(escape(stop.message), highlight=False, soft_wrap=True)
                raise typer.Exit(stop.exit_code) from None

        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        del run.__wrapped__  # typer reads the signature above, not the function's
        app.command(name, **settings)(run)
        return function

    return register


MAX_NAME_BYTES = 255  # a file or folder name on Linux, macOS and Windows file systems


def value_problems(parameter: str, value: Any) -> list[str]:
    """What no command can take, whatever it does with the value: a path with a NUL byte or a name longer than
    file systems allow, an integer beyond 64 bits (every number here ends up in a 64-bit array or in torch)."""
    option = "--" + parameter.replace("_", "-")
    found = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, Path):
            text = str(item)
            if "\x00" in text:
                shown = text.replace("\x00", "\\0")[:80]
                found.append(f"{option}: a path cannot contain a NUL byte ({shown!r})")
            elif long := [part for part in item.parts if len(part.encode(errors="surrogateescape")) > MAX_NAME_BYTES]:
                found.append(f"{option} {long[0][:40]}...: a name longer than {MAX_NAME_BYTES} bytes")
        elif isinstance(item, int) and not isinstance(item, bool) and not -2 ** 63 <= item < 2 ** 63:
            found.append(f"{option} {str(item)[:40]}: out of range (a 64-bit integer)")
    return found


def progress() -> Progress:
    """A progress bar (count, elapsed, ETA) on stderr; silent when stderr is not a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=errors, transient=True,
                    disable=not errors.is_terminal)


def embedding_progress(total: int):
    """A bar for ``total`` samples, and the function that advances it."""
    bar = progress()
    task = bar.add_task("embedding", total=total)
    return bar, lambda count: bar.advance(task, count)


def stoppable(hint: Callable[[], str]):
    """Ctrl-C and SIGTERM stop the block with ``hint()`` (see ``reid.engine.stop``)."""
    from reid.engine.stop import stop_signals

    return stop_signals(hint)


# Shared options ---------------------------------------------------------------------------------------------------
def _dataset_name(value: str | None) -> str | None:
    """--dataset / --layout: a registered dataset (read when the command runs, so a registered plug-in counts)."""
    if value is not None and value not in DATASETS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, DATASETS))}")
    return value


DatasetOption = Annotated[str, typer.Option("--dataset", "-d", metavar="DATASET", callback=_dataset_name,
                                            help=f"The dataset: {dataset_help()}")]
DataRootOption = Annotated[Path, typer.Option(metavar="PATH", help="Dataset root, as the authors distribute it")]
SearchModeOption = Annotated[SearchModeChoice, choice_option(SearchModeChoice, help="SYSU-MM01 search")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override any config key, read as YAML (repeatable), e.g. --set lr=1e-3 "
                                       "--set eval_every=5; named options win over --set")]
TrainCompileOption = Annotated[CompileChoice | None, choice_option(
    CompileChoice, help="torch.compile (overrides compile): auto compiles only where it pays (long CUDA runs)")]
ThreadsOption = Annotated[int | None, typer.Option(min=1, metavar="INT", help="CPU threads of torch's operations "
                                                                              "(default: the usable cores, less "
                                                                              "loading workers; 1 on a busy "
                                                                              "machine)")]
GalleryOption = Annotated[str, typer.Option(metavar="GALLERY", help="Gallery: a directory (FAISS), or "
                                                                   "milvus://HOST:PORT/COLLECTION (a Milvus server) "
                                                                   "or milvus:FILE.db/COLLECTION (Milvus Lite)")]


def _moment(value: str | None) -> int | None:
    """--timestamp / --since / --until: seconds since 1970 UTC, or an ISO 8601 date and time (without a zone: this
    machine's)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither seconds since 1970 nor an ISO 8601 time "
                                 f"(e.g. 2026-12-03T18:00:00+00:00)") from None


def time_option(help: str) -> Any:
    return typer.Option(metavar="TIME", callback=_moment, help=f"{help} (ISO 8601, or seconds since 1970 UTC)")
# Images given after the options, or with a repeatable option (--images for add, --image for query).
ImagePaths = Annotated[list[Path] | None, typer.Argument(metavar="[PATH]...", help="Image files or folders")]
ImagesOption = Annotated[list[Path] | None, typer.Option(metavar="PATH", help="An image file or folder (repeatable)")]


@option_group
class ModelSource:
    """Where the model comes from: a run checkpoint, or a bare timm backbone as a baseline (with its weights and
    input size)."""

    checkpoint: Annotated[Path | None, typer.Option(metavar="PATH", help="A run checkpoint (best.pt / last.pt)")] \
        = None
    backbone: Annotated[str | None, typer.Option(metavar="NAME", help="A bare timm backbone's pooled output instead "
                                                                      "(a baseline)")] = None
    pretrained: Annotated[Path | None, typer.Option(metavar="PATH", help="ImageNet weights for --backbone")] = None
    input_size: Annotated[str, typer.Option(metavar="HxW", help="Input size for --backbone")] = "288x144"

    def problems(self) -> list[str]:
        """What can be checked without loading torch: one model source, files that exist, a known backbone, a
        readable size."""
        found = []
        if (self.checkpoint is None) == (self.backbone is None):
            found.append("give either --checkpoint or --backbone")
        for option, path in (("--checkpoint", self.checkpoint), ("--pretrained", self.pretrained)):
            if path is not None and not regular_file(path):
                found.append(f"{option} {path}: no such file")
        if self.backbone is not None:
            from reid.catalogue import check_backbone

            found += _problems(lambda: check_backbone(self.backbone))
        found += _problems(lambda: parse_size(self.input_size, "--input-size"))
        return found

    def settings(self) -> dict[str, Any]:
        return {field.name: value_of(getattr(self, field.name)) for field in fields(self)}


@option_group
class RunOptions:
    """Where and how the model runs: the device, the engine, the CPU threads and the precision."""

    device: Annotated[DeviceChoice, choice_option(DeviceChoice, help="Where the model runs")] = DeviceChoice.auto
    engine: Annotated[EngineChoice, choice_option(EngineChoice, envvar="REID_ENGINE",
                                                  help="What runs the model: auto is ONNX Runtime on a CPU where it "
                                                       "is installed and the model exports, PyTorch otherwise")] = \
        EngineChoice.auto
    threads: ThreadsOption = None
    amp: Annotated[AmpChoice, choice_option(AmpChoice, help="Mixed precision: auto = bf16 on CUDA, float32 on a "
                                                            "CPU")] = AmpChoice.auto

    def settings(self) -> dict[str, Any]:
        return {field.name: value_of(getattr(self, field.name)) for field in fields(self)}


@option_group
class BatchOptions:
    """How many samples are embedded together: the batch, the loading workers and compilation."""

    batch_size: Annotated[int | None, typer.Option(min=1, metavar="INT", help="Samples per forward pass (default: "
                                                                              "256 on CUDA, 64 on a CPU)")] = None
    num_workers: Annotated[int | None, typer.Option(min=0, metavar="INT", help="Data loading workers (default: by "
                                                                               "the cores)")] = None
    compile: Annotated[CompileChoice, choice_option(CompileChoice, help="torch.compile: auto compiles only passes "
                                                                        "long enough to pay (millions of images on "
                                                                        "CUDA)")] = CompileChoice.auto

    def settings(self) -> dict[str, Any]:
        return {field.name: value_of(getattr(self, field.name)) for field in fields(self)}


def load_embedder(source: ModelSource, *groups: RunOptions | BatchOptions, **more: Any):
    """The Embedder the options describe (a note is printed when a backbone runs at another size, or when the
    machine is busy)."""
    refuse(source.problems())
    from reid.engine.inference import Embedder

    settings = source.settings()
    for options in groups:
        settings |= options.settings()
    loaded = Embedder.load(**settings, **more)
    loaded.on_fallback = note
    for message in loaded.notes:
        note(message)
    return loaded


@option_group
class SampleOptions:
    """Which samples a gallery or an archive holds: a dataset split, or image files."""

    images: Annotated[list[Path] | None, typer.Option(metavar="PATH", help="Image files or folders instead of a "
                                                                            "dataset (repeatable)")] = None
    dataset: Annotated[str | None, typer.Option(metavar="DATASET", callback=_dataset_name,
                                                help=f"The dataset: {dataset_help()}")] = None
    data_root: Annotated[Path | None, typer.Option(metavar="PATH", help="Dataset root")] = None
    split: Annotated[Split, choice_option(Split, help="Which samples of the dataset")] = Split.gallery
    direction: Annotated[DirectionChoice, choice_option(DirectionChoice, help="Direction whose query/gallery is "
                                                                              "meant")] = DirectionChoice.ir2vis
    trial: Annotated[int, typer.Option(min=0, metavar="INT", help="Gallery trial / RegDB split")] = 0
    sysu_mode: SearchModeOption = SearchModeChoice.all
    modality: Annotated[ModalityChoice | None, choice_option(ModalityChoice, help="Only samples of this modality")] \
        = None

    def problems(self) -> list[str]:
        if (self.images is None) == (self.dataset is None):
            return ["give either --dataset with --data-root, or --images"]
        found = []
        if self.dataset is not None:
            found += dataset_problems(self.dataset, self.data_root, self.trial)
        for path in self.images or []:
            if not (regular_file(path) or directory(path)):
                problem = "not a regular file or folder" if os.path.lexists(path) else "no such image or folder"
                found.append(f"--images {path}: {problem}")
        return found

    def samples(self):
        """The samples the options select."""
        from reid.engine.galleries import dataset_samples, image_samples

        refuse(self.problems())
        if self.images is not None:
            return image_samples(self.images, value_of(self.modality))
        return dataset_samples(open_dataset(self.dataset, self.data_root, value_of(self.sysu_mode)), self.split,
                               directions_of(self.direction)[0], self.trial, value_of(self.modality))


def dataset_problems(dataset: str, data_root: Path | None, trial: int = 0, option: str = "--data-root") -> list[str]:
    """A dataset root that is missing, and a trial the dataset's protocol does not have (torch-free)."""
    from reid.data.registry import dataset_class

    found = []
    if data_root is None:
        found.append(f"--dataset needs {option}")
    elif not directory(data_root):
        found.append(f"{option} {data_root}: no such directory")
    reader = dataset_class(dataset)
    if not 0 <= trial < reader.num_trials:
        found.append(f"--trial {trial}: {reader.title} has trials 0..{reader.num_trials - 1}")
    return found


def _problems(check: Callable[[], Any]) -> list[str]:
    try:
        check()
    except ReidError as error:
        return problems_in(error)
    return []


def open_dataset(dataset: str, data_root: Path, mode: str = "all", verify: bool = True):
    """Parse a dataset root (every problem listed) and, with ``verify``, decode its images with a progress bar."""
    from reid.data import load_dataset

    parsed = load_dataset(dataset, data_root, mode=mode)
    if verify:
        with progress() as bar:
            task = bar.add_task("checking images", total=None)
            parsed.verify_images(lambda done, total: bar.update(task, completed=done, total=total))
    return parsed


def writable(*paths: tuple[str, Path | None]) -> list[str]:
    """Problems with output files: each (option, path) must be writable (its folder is made)."""
    from reid.io import ensure_writable

    found = []
    for option, path in paths:
        if path is not None:
            found += [f"{option} {problem}" for problem in _problems(lambda path=path: ensure_writable(path))]
    return found
