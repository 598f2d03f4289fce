"""The `reid` command line: thin commands that call into the `reid` package.

Run `reid --help` (or `python -m reid --help`) for the commands. Bad input (a missing file, an unknown backbone, a
malformed config) is reported on one line with exit code 2; Ctrl-C and SIGTERM stop a long command with how to
continue it (exit codes 130 and 143). Nothing heavy (torch, timm, FAISS) is imported until a command needs it, so
`--help` and user errors answer at once.

Options shared by several commands are declared once, as an option group (a dataclass whose fields are the
options, e.g. ``ModelOptions``); a command takes the group as one parameter and ``command`` spreads its fields over
the command line.
"""
from __future__ import annotations

import functools
import inspect
import json
import shlex
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer uses click itself
    from click import exceptions as click_errors

from reid.data.registry import DATASETS, dataset_help
from reid.data.samples import DIRECTIONS, MODALITIES, Split
from reid.errors import ReidError
from reid.index.settings import INDEX_TYPES
from reid.io import regular_file
from reid.settings import AMP_MODES, COMPILE_MODES, DEVICES, parse_size


class PlainHelp:
    """A command or group whose own --help flag shows no ``<bool>`` metavar, like the other flags."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class PlainHelpCommand(PlainHelp, TyperCommand):
    pass


class PlainHelpGroup(PlainHelp, TyperGroup):
    pass


class OneLineErrors(PlainHelp, TyperGroup):
    """The root command group: a usage error (an unknown option, a value that is not one of the choices) is one
    line on stderr and exit code 2, like the commands' own errors, instead of a framed block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global invoked
        invoked = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as error:
            if not standalone_mode:
                raise
            error.show()
            sys.exit(error.exit_code)
        except click_errors.ClickException as error:
            if not standalone_mode:
                raise
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


invoked: list[str] = []  # the arguments of this invocation, as typed (or as a test passed them)


def typed_command() -> str:
    """The command line that is running, for reports (``reid evaluate ... --output m.json``)."""
    return shlex.join(["reid", *invoked])


app = typer.Typer(
    name="reid",
    cls=OneLineErrors,
    help="Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped or captured output has no terminal width; rich would then cut tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the terminal width


def choice(name: str, values) -> type[Enum]:
    """A command-line choice (typer reads choices from an Enum) of the library's values."""
    return Enum(name, {value: value for value in values}, type=str)


DeviceChoice = choice("DeviceChoice", DEVICES)
AmpChoice = choice("AmpChoice", AMP_MODES)
CompileChoice = choice("CompileChoice", COMPILE_MODES)
ModalityChoice = choice("ModalityChoice", MODALITIES)
DirectionChoice = choice("DirectionChoice", (*DIRECTIONS, "both"))
IndexTypeChoice = choice("IndexTypeChoice", INDEX_TYPES)


def directions_of(direction: Enum) -> list[str]:
    return list(DIRECTIONS) if direction.value == "both" else [direction.value]


def value_of(option: Any) -> Any:
    """A plain value for the library: an Enum choice's value, anything else as it is."""
    return option.value if isinstance(option, Enum) else option


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


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and is_dataclass(annotation) and getattr(annotation, "option_group", False)


def _value_type(annotation: Any) -> Any:
    """The type a parameter's values have: ``Annotated``, ``X | None`` and ``list[X]`` unwrapped."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(arguments) == 1:
        annotation = arguments[0]
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _plain_help(annotation: Any) -> Any:
    """A parameter whose help shows plain metavars (INT, PATH, a short choice list, none for a flag) instead of
    typer's ``<int range>``, ``<list[Path]>`` and ``<bool>``; a long choice list moves into the help text, so
    help never wraps a metavar mid-word at 80 columns."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation
    info = next((a for a in typing.get_args(annotation)[1:] if isinstance(a, typer.models.ParameterInfo)), None)
    if info is None or info.metavar is not None:
        return annotation
    kind = _value_type(annotation)
    if kind is bool:
        info.metavar = ""
    elif isinstance(kind, type) and issubclass(kind, Enum):
        choices = [member.value for member in kind]
        if len("|".join(choices)) <= 16:
            info.metavar = "|".join(choices)
        else:
            info.metavar = "CHOICE"
            info.help = f"{info.help or ''} ({', '.join(choices)})".strip()
    else:
        info.metavar = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}.get(kind, info.metavar)
    return annotation




def command(group: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """Register a command. Parameters typed as an option group (``ModelOptions``, ``SampleOptions``) become their
    fields' options; user errors (ReidError) print one line and exit with code 2; a stop (Ctrl-C, SIGTERM) prints
    how to continue and exits with 130 or 143."""

    def register(function: Callable) -> Callable:
        hints = typing.get_type_hints(function, include_extras=True)
        groups = {name: hints[name] for name in inspect.signature(function).parameters if _is_group(hints[name])}
        parameters = []
        for parameter in inspect.signature(function).parameters.values():
            if parameter.name in groups:
                group_type = groups[parameter.name]
                group_hints = typing.get_type_hints(group_type, include_extras=True)
                parameters += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                                 annotation=_plain_help(group_hints[f.name]))
                               for f in fields(group_type)]
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                                                    annotation=_plain_help(hints[parameter.name])))

        @functools.wraps(function)
        def run(**values: Any) -> Any:
            from reid.engine.stop import Stopped

            for name, group_type in groups.items():
                values[name] = group_type(**{f.name: values.pop(f.name) for f in fields(group_type)})
            try:
                return function(**values)
            except ReidError as error:
                errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except Stopped as stop:
                errors.print(escape(stop.message), highlight=False, soft_wrap=True)
                raise typer.Exit(stop.exit_code) from None

        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        del run.__wrapped__  # typer reads the signature above, not the function's
        group.command(name, cls=PlainHelpCommand, **kwargs)(run)
        return function

    return register


def progress() -> Progress:
    """A progress bar (count, elapsed, ETA) on stderr; silent when stderr is not a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=errors, transient=True,
                    disable=not errors.is_terminal)


def note(message: str) -> None:
    errors.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


# Options shared by several commands ---------------------------------------------------------------------------
def _dataset_name(value: str | None) -> str | None:
    """--dataset / --layout: a registered dataset (read when the command runs, so a registered plug-in counts)."""
    if value is not None and value not in DATASETS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, DATASETS))}")
    return value


DatasetOption = Annotated[str, typer.Option("--dataset", "-d", metavar="DATASET", callback=_dataset_name,
                                            help=f"The dataset: {dataset_help()}")]
DataRootOption = Annotated[Path, typer.Option(help="Dataset root, as the authors distribute it")]
SearchModeOption = Annotated[str, typer.Option(help="SYSU-MM01 search: all or indoor")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override any config key, read as YAML (repeatable), e.g. --set lr=1e-3 "
                                       "--set eval_every=5; named options win over --set")]
TrainCompileOption = Annotated[CompileChoice | None, typer.Option(
    help="torch.compile (overrides compile): auto compiles only where it pays (long CUDA runs)")]


@dataclass(frozen=True)
class ModelOptions:
    """The model that embeds images: a run checkpoint, or a bare timm backbone as a baseline, and how it runs.

    One declaration for every command that loads a model (evaluate, visualize, index build / add / query, extract,
    export, serve). Each field is an option of those commands and a parameter of ``Embedder.load`` of the same
    name, so an option is added here and there, and nowhere else.
    """

    option_group = True

    checkpoint: Annotated[Path | None, typer.Option(help="A run checkpoint (best.pt / last.pt)",
                                                    rich_help_panel="Model")] = None
    backbone: Annotated[str | None, typer.Option(help="A bare timm backbone's pooled output instead (a baseline)",
                                                 rich_help_panel="Model")] = None
    pretrained: Annotated[Path | None, typer.Option(help="ImageNet weights for --backbone",
                                                    rich_help_panel="Model")] = None
    input_size: Annotated[str, typer.Option(metavar="HxW", help="Input size for --backbone",
                                            rich_help_panel="Model")] = "288x144"
    device: Annotated[DeviceChoice, typer.Option(help="Where the model runs", rich_help_panel="Model")] = \
        DeviceChoice.auto
    batch_size: Annotated[int | None, typer.Option(min=1, help="Samples per forward pass (default: 256 on CUDA, 64 "
                                                               "on a CPU)", rich_help_panel="Model")] = None
    compile: Annotated[CompileChoice, typer.Option(help="torch.compile: auto compiles only passes long enough to "
                                                        "pay (millions of images on CUDA)",
                                                   rich_help_panel="Model")] = CompileChoice.auto
    amp: Annotated[AmpChoice, typer.Option(help="Mixed precision: auto = bf16 on CUDA, float32 on a CPU",
                                           rich_help_panel="Model")] = AmpChoice.auto

    def check(self) -> None:
        """What can be checked without loading torch: one model source, files that exist, a readable size."""
        if (self.checkpoint is None) == (self.backbone is None):
            raise ReidError("give either --checkpoint or --backbone")
        for option, path in (("--checkpoint", self.checkpoint), ("--pretrained", self.pretrained)):
            if path is not None and not regular_file(path):
                raise ReidError(f"{option} {path}: no such file")
        parse_size(self.input_size, "--input-size")

    def embedder(self):
        """The Embedder these options describe (a note is printed when a backbone runs at another size)."""
        self.check()
        from reid.engine.inference import Embedder

        loaded = Embedder.load(**{f.name: value_of(getattr(self, f.name)) for f in fields(self)})
        loaded.on_fallback = note
        if loaded.size_note:
            note(loaded.size_note)
        return loaded


@dataclass(frozen=True)
class SampleOptions:
    """Which samples a gallery or an archive holds: a dataset split, or image files."""

    option_group = True

    images: Annotated[list[Path] | None, typer.Option(metavar="PATH", help="Image files or folders instead of a "
                                                      "dataset (repeatable)", rich_help_panel="Samples")] = None
    dataset: Annotated[str | None, typer.Option(metavar="DATASET", callback=_dataset_name,
                                                help=f"The dataset: {dataset_help()}",
                                                rich_help_panel="Samples")] = None
    data_root: Annotated[Path | None, typer.Option(help="Dataset root", rich_help_panel="Samples")] = None
    split: Annotated[Split, typer.Option(help="Which samples of the dataset", rich_help_panel="Samples")] = \
        Split.gallery
    direction: Annotated[DirectionChoice, typer.Option(help="Direction whose query/gallery is meant",
                                                       rich_help_panel="Samples")] = DirectionChoice.ir2vis
    trial: Annotated[int, typer.Option(min=0, help="Gallery trial / RegDB split", rich_help_panel="Samples")] = 0
    sysu_mode: Annotated[str, typer.Option(help="SYSU-MM01 search: all or indoor", rich_help_panel="Samples")] = \
        "all"
    modality: Annotated[ModalityChoice | None, typer.Option(help="Only samples of this modality",
                                                            rich_help_panel="Samples")] = None

    def check(self) -> None:
        if (self.images is None) == (self.dataset is None):
            raise ReidError("give either --dataset with --data-root, or --images")
        if self.dataset is not None and self.data_root is None:
            raise ReidError("--dataset needs --data-root")

    def samples(self):
        """The samples the options select."""
        from reid.engine.galleries import dataset_samples, image_samples

        self.check()
        if self.images is not None:
            return image_samples(self.images, value_of(self.modality))
        return dataset_samples(open_dataset(self.dataset, self.data_root, self.sysu_mode), self.split,
                               directions_of(self.direction)[0], self.trial, value_of(self.modality))


def open_dataset(dataset: str, data_root: Path, mode: str = "all", verify: bool = True):
    """Parse a dataset root (every problem listed) and, with ``verify``, decode its images with a progress bar."""
    from reid.data import load_dataset

    parsed = load_dataset(dataset, data_root, mode=mode)
    if verify:
        with progress() as bar:
            task = bar.add_task("checking images", total=None)
            parsed.verify_images(lambda done, total: bar.update(task, completed=done, total=total))
    return parsed


def stoppable(hint: Callable[[], str]):
    """Ctrl-C and SIGTERM stop the block with ``hint()`` (see ``reid.engine.stop``)."""
    from reid.engine.stop import stop_signals

    return stop_signals(hint)


# reid models ----------------------------------------------------------------------------------------------------
@command(app, "models")
def models_command(
        names: Annotated[
            list[str] | None, typer.Argument(help="Backbones to list (default: the paper's comparison set)")
        ] = None,
        size: Annotated[str, typer.Option(metavar="HxW", help="Input size to check each backbone runs at")]
        = "288x144",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line, one per backbone")]
        = False,
        weights_dir: Annotated[Path, typer.Option(help="Where the authors' AttNet and ACmix weights are kept")]
        = Path("weights"),
        measure: Annotated[bool, typer.Option("--measure", help="Build every backbone to count parameters and MACs "
                                                                "and probe the size (seconds each), instead of "
                                                                "the recorded figures")] = False,
) -> None:
    """List backbones with their parameters, MACs at 224x224, whether they run at the re-ID input size, and
    whether the authors' ImageNet weights of each AttNet and ACmix variant are found (and load)."""
    probe = parse_size(size)
    from reid.catalogue import PAPER_BACKBONES, recorded_entry, weights_file, weights_note

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
        task = bar.add_task("listing backbones", total=len(names or PAPER_BACKBONES))
        for name in names or PAPER_BACKBONES:
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


# reid data ------------------------------------------------------------------------------------------------------
data_app = typer.Typer(cls=PlainHelpGroup, help="Check dataset roots and write synthetic datasets.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@command(data_app, "check")
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


@command(data_app, "make-demo")
def data_make_demo_command(
        layout: Annotated[str, typer.Option(metavar="DATASET", callback=_dataset_name,
                                            help=f"Whose layout to write: {dataset_help()}")],
        out: Annotated[Path, typer.Option(help="Dataset root to create")],
        ids: Annotated[int | None, typer.Option(min=4, help="Number of identities (default: trains in minutes)")]
        = None,
        seed: Annotated[int, typer.Option(help="Random seed")] = 0,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing root")] = False,
) -> None:
    """Write a small synthetic dataset in a real dataset's exact layout (for tests, demos, pipelines)."""
    from reid.data import make_dataset

    with console.status(f"writing a synthetic {layout} dataset to {out}"):
        made = make_dataset(layout, out, ids, seed, overwrite)
    console.print(f"wrote {made} ({layout} layout); check it with: reid data check --dataset {layout} --root {made}")


# reid train / evaluate / visualize ------------------------------------------------------------------------------
@command(app, "train")
def train_command(
        config: Annotated[Path | None, typer.Option(help="Experiment config (YAML), e.g. configs/llcm_attnet_t1.yaml;"
                                                         " with --resume, the run's own config.yaml by default")]
        = None,
        data_root: Annotated[Path | None, typer.Option(help="Dataset root (overrides data_root)")] = None,
        output_dir: Annotated[Path | None, typer.Option(help="Run directory (overrides output_dir)")] = None,
        backbone: Annotated[str | None, typer.Option(help="Any timm model name (overrides backbone)")] = None,
        epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Images per batch (2 x identities x instances)")] = None,
        device: Annotated[DeviceChoice | None, typer.Option(help="Where to train")] = None,
        pretrained: Annotated[Path | None, typer.Option(help="ImageNet weights for the backbone (a file)")] = None,
        seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
        num_workers: Annotated[int | None, typer.Option(min=0, help="Data loading workers")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir from its last.pt, "
                                                              "as it was configured (options given beside it that "
                                                              "a resumed run can take are applied and said)")]
        = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run that output_dir already holds")]
        = False,
        tensorboard: Annotated[bool | None, typer.Option("--tensorboard", help="Also write TensorBoard scalars "
                                                                               "(output_dir/tensorboard)")] = None,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """Train a cross-modality re-ID model; checkpoints, train.log, metrics.csv and curves.png go to the run
    directory."""
    from reid.config import load_config

    overrides = dict(data_root=data_root and str(data_root), output_dir=output_dir and str(output_dir),
                     backbone=backbone, epochs=epochs, device=value_of(device),
                     pretrained=pretrained and str(pretrained), seed=seed, num_workers=num_workers,
                     tensorboard=tensorboard, compile=value_of(compile))
    if config is None:
        if not (resume and output_dir):
            raise ReidError("give --config (or --output-dir RUN --resume to continue a run)")
        from reid.config import resume_config

        settings = resume_config(output_dir, assignments, **overrides)
    else:
        settings = load_config(config, assignments=assignments, **overrides)
    if batch_size is not None:
        settings = settings.with_batch_size(batch_size)
    settings.check_paths()
    if settings.tensorboard:
        from reid.errors import require

        require("tensorboard", "tensorboard", "--tensorboard")
    from reid.engine.runtime import RunDirectory, process_rank
    from reid.engine.trainer import Trainer

    main_process = process_rank() == 0
    run = RunDirectory(Path(settings.output_dir))
    with stoppable(lambda: run.resume_hint("train")):
        Trainer(settings, resume=resume, console=console, overwrite=overwrite).fit()
    if main_process:
        console.print(f"done: {settings.output_dir}/best.pt, last.pt, train.log, metrics.csv, curves.png")


@command(app, "evaluate")
def evaluate_command(
        dataset: DatasetOption,
        data_root: DataRootOption,
        model: ModelOptions,
        direction: Annotated[DirectionChoice, typer.Option(help="Search direction")] = DirectionChoice.both,
        trials: Annotated[int | None, typer.Option(min=1, help="Gallery trials (default: all the protocol has: "
                                                              "10 for LLCM and SYSU-MM01, 1 for VCM-HITSZ)")] = None,
        trial: Annotated[int, typer.Option(min=0, help="RegDB split (0..9)")] = 0,
        rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")] = False,
        output: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here, with each query's AP and "
                                                         "top-10 (what reid serve --evaluation shows)")] = None,
        visualize: Annotated[Path | None, typer.Option(help="Also save a rank-list picture here")] = None,
        sysu_mode: SearchModeOption = "all",
        seq_len: Annotated[int, typer.Option(min=1, help="Frames per tracklet (VCM-HITSZ)")] = 6,
        num_workers: Annotated[int | None, typer.Option(min=0, help="Data loading workers")] = None,
        use_index: Annotated[bool, typer.Option(help="Search the gallery through an exact FAISS index")] = False,
) -> None:
    """Rank-1/5/10/20, mAP and mINP under the dataset's official protocol, in both search directions."""
    from reid.io import ensure_writable

    model.check()
    for path in (output, visualize):
        if path is not None:
            ensure_writable(path)
    from reid.data.registry import dataset_class

    asked = directions_of(direction)
    running = [d for d in asked if d in dataset_class(dataset).directions]
    if not running:
        reader = dataset_class(dataset)
        raise ReidError(f"{reader.title}'s official protocol has no {' or '.join(asked)} search (it evaluates "
                        f"{' and '.join(reader.directions)}); nothing to evaluate")
    from reid.engine.evaluate import dataset_rank_lists, evaluate_dataset, evaluation_notes
    from reid.visualize import draw_rank_lists

    embedder = model.embedder()
    embedder.seq_len, embedder.num_workers = seq_len, num_workers
    parsed = open_dataset(dataset, data_root, sysu_mode)
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
        model: ModelOptions,
        output: Annotated[Path, typer.Option(help="Where to save the picture (PNG)")] = Path("rank_lists.png"),
        queries: Annotated[int, typer.Option(min=1, help="Queries per direction")] = 4,
        top_k: Annotated[int, typer.Option(min=1, help="Gallery matches per query")] = 10,
        direction: Annotated[DirectionChoice, typer.Option(help="Search direction")] = DirectionChoice.both,
        trial: Annotated[int, typer.Option(min=0, help="RegDB split")] = 0,
        seed: Annotated[int, typer.Option(help="Which queries are drawn")] = 0,
        sysu_mode: SearchModeOption = "all",
) -> None:
    """Draw queries with their top-k gallery matches (green correct, red wrong), both directions side by side."""
    from reid.io import ensure_writable

    model.check()
    ensure_writable(output)
    from reid.engine.evaluate import dataset_rank_lists
    from reid.visualize import draw_rank_lists

    embedder = model.embedder()
    parsed = open_dataset(dataset, data_root, sysu_mode, verify=False)
    directions = [d for d in directions_of(direction) if d in parsed.directions]
    panels = dataset_rank_lists(embedder, parsed, directions, trial, queries, top_k, seed)
    draw_rank_lists(panels, output, f"{embedder.description} on {parsed.title}")
    console.print(f"rank lists: {output}")


# reid index -----------------------------------------------------------------------------------------------------
index_app = typer.Typer(cls=PlainHelpGroup, no_args_is_help=True,
                        help="FAISS galleries: build, query, inspect, add to, remove from and compact.")
app.add_typer(index_app, name="index")
GalleryOption = Annotated[Path, typer.Option(help="Gallery directory")]


def _waiting(gallery: Path) -> Callable[[str], None]:
    return lambda holder: errors.print(f"waiting for {holder}, which is writing {gallery}")


def _embedding_progress(total: int):
    bar = progress()
    task = bar.add_task("embedding", total=total)
    return bar, lambda count: bar.advance(task, count)


@command(index_app, "build")
def index_build_command(
        out: Annotated[Path, typer.Option(help="Gallery directory to write")],
        model: ModelOptions,
        samples: SampleOptions,
        index_type: Annotated[IndexTypeChoice, typer.Option("--type", help=", ".join(
            f"{name}: {kind.summary}" for name, kind in INDEX_TYPES.items()))] = IndexTypeChoice.flat,
        nlist: Annotated[int | None, typer.Option(min=1, help="IVF types: inverted lists")] = None,
        nprobe: Annotated[int, typer.Option(min=1, help="IVF types: lists searched")] = 64,
        hnsw_m: Annotated[int, typer.Option(min=4, help="hnsw: links per node")] = 32,
        ef_search: Annotated[int, typer.Option(min=1, help="hnsw: search depth")] = 128,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a gallery --out already holds")]
        = False,
) -> None:
    """Embed a dataset split or a folder of images and save a FAISS gallery."""
    from reid.index import IndexSettings, gallery_lock

    model.check()
    samples.check()
    settings = IndexSettings(type=value_of(index_type), hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)
    with gallery_lock(out, waiting=_waiting(out)) as real:  # held for the whole build: nothing changes it meanwhile
        if real.exists() and not overwrite:
            raise ReidError(f"{out} already holds a gallery; add to it with reid index add, or replace it with "
                            f"--overwrite")
        chosen = samples.samples()
        embedder = model.embedder()
        from reid.engine.galleries import build_gallery

        bar, advance = _embedding_progress(len(chosen))
        with bar:
            gallery = build_gallery(embedder, chosen, settings, progress=advance)
        gallery.save(real)
    console.print(f"gallery of {gallery.live_count} items ({gallery.settings.type}, {embedder.backbone}) -> {out}")


# Images given after the options, or with a repeatable option (--images for add, --image for query).
ImagePaths = Annotated[list[Path] | None, typer.Argument(help="Image files or folders")]
ImagesOption = Annotated[list[Path] | None, typer.Option(metavar="PATH", help="An image file or folder (repeatable)")]


def _image_paths(paths: list[Path] | None, more: list[Path] | None, option: str) -> list[Path]:
    given = list(paths or []) + list(more or [])
    if not given:
        raise ReidError(f"give images: {option} PATH (repeatable) or paths after the options")
    return given


@command(index_app, "add")
def index_add_command(
        index: GalleryOption,
        model: ModelOptions,
        paths: ImagePaths = None,
        images: ImagesOption = None,
        modality: Annotated[ModalityChoice | None, typer.Option(help="Default: guessed, grayscale = ir")] = None,
        label: Annotated[str | None, typer.Option(help="A free label stored with each new item")] = None,
        pid: Annotated[int | None, typer.Option(min=0, help="The identity of the new items, when known")] = None,
        camid: Annotated[int | None, typer.Option(min=0, help="Their camera, when known")] = None,
) -> None:
    """Embed more images with the gallery's own model and add them."""
    model.check()
    given = _image_paths(images, paths, "--images")
    from reid.engine.galleries import image_samples, sample_metadata
    from reid.index import Gallery

    embedder = model.embedder()
    chosen = [replace(sample, pid=sample.pid if pid is None else pid, camid=sample.camid if camid is None else camid)
              for sample in image_samples(given, value_of(modality))]
    Gallery.load(index).check_model(embedder.backbone, embedder.num_features, embedder.digest)  # before the work
    embeddings = embedder.embeddings(chosen)
    with Gallery.updating(index, waiting=_waiting(index)) as gallery:
        added = gallery.add(embeddings, [sample_metadata(s, label) for s in chosen])
    skipped = f" ({len(chosen) - added} already in the gallery)" if added < len(chosen) else ""
    console.print(f"added {added} items{skipped}; the gallery now holds {gallery.live_count}")


@command(index_app, "remove")
def index_remove_command(
        index: GalleryOption,
        paths: Annotated[list[str], typer.Argument(help="Paths of the items to remove")],
) -> None:
    """Remove items by path (searches skip them at once; `reid index compact` reclaims their space)."""
    from reid.index import Gallery

    with Gallery.updating(index, waiting=_waiting(index)) as gallery:
        removed, missing = gallery.remove(paths)
        if not removed:
            raise ReidError(f"none of the {len(paths)} paths is in the gallery {index}")
    console.print(f"removed {removed} items; {gallery.live_count} remain")
    if missing:
        note(f"not in the gallery: {', '.join(missing[:10])}" + (f" (+{len(missing) - 10} more)"
                                                                if len(missing) > 10 else ""))


@command(index_app, "compact")
def index_compact_command(index: GalleryOption) -> None:
    """Rebuild a gallery without its removed items (the index keeps its training; nothing is embedded again)."""
    from reid.index import Gallery, gallery_lock

    with gallery_lock(index, waiting=_waiting(index)):
        gallery = Gallery.load(index)
        removed = gallery.removed_count
        compacted = gallery.compact()
        compacted.save(index)
    console.print(f"compacted {index}: {removed} removed items dropped, {compacted.live_count} remain")


@command(index_app, "info")
def index_info_command(index: GalleryOption) -> None:
    """Print a gallery's manifest."""
    from reid.index import Gallery

    gallery = Gallery.load(index)
    typer.echo(json.dumps(gallery.manifest.model_dump() | {"by_modality": gallery.counts_by_modality(),
                                                            "removed": gallery.removed_count}, indent=2))


@command(index_app, "query")
def index_query_command(
        index: GalleryOption,
        model: ModelOptions,
        paths: ImagePaths = None,
        image: ImagesOption = None,
        top_k: Annotated[int, typer.Option(min=1, help="Results per query")] = 10,
        modality: Annotated[ModalityChoice | None, typer.Option(help="Only gallery items of this modality")] = None,
        cameras: Annotated[list[int] | None, typer.Option("--camera", help="Only gallery items from this camera "
                                                                            "(repeatable)")] = None,
        exclude_camera: Annotated[int | None, typer.Option(help="Skip every gallery item from this camera (e.g. the "
                                                                "query's own, when its identity is unknown)")] = None,
        query_modality: Annotated[ModalityChoice | None, typer.Option(help="Default: guessed, grayscale = ir")]
        = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result line")] = False,
        visualize: Annotated[Path | None, typer.Option(help="Save the rank lists as a picture")] = None,
) -> None:
    """Search a gallery with query images; the model must be the one that built the gallery."""
    model.check()
    given = _image_paths(image, paths, "--image")
    from reid.engine.galleries import image_samples
    from reid.index import Gallery
    from reid.visualize import RankList, draw_rank_lists

    gallery = Gallery.load(index)
    embedder = model.embedder()
    gallery.check_model(embedder.backbone, embedder.num_features, embedder.digest)
    queries = image_samples(given, value_of(query_modality))
    results = gallery.search(embedder.embeddings(queries), top_k, modality=value_of(modality),
                             exclude_camids=None if exclude_camera is None else [exclude_camera] * len(queries),
                             camids=cameras)
    if not any(results):
        filters = [f"modality {value_of(modality)}" if modality else "", f"cameras {cameras}" if cameras else "",
                   f"not camera {exclude_camera}" if exclude_camera is not None else ""]
        note(f"no gallery item passes the filters ({', '.join(f for f in filters if f)}); the gallery holds "
             f"{gallery.counts_by_modality()}")
    for query, hits in zip(queries, results, strict=True):
        if as_json:
            for hit in hits:
                typer.echo(json.dumps({"query": query.path, "rank": hit.rank, "score": round(hit.score, 6),
                                       "path": hit.path, "pid": hit.pid, "camid": hit.camid,
                                       "modality": hit.modality}))
            continue
        table = Table(title=f"{escape(str(query.path))} ({query.modality})")
        for column in ("rank", "score", "path", "pid", "camid", "modality"):
            table.add_column(column, justify="right" if column in ("rank", "score") else "left", overflow="fold")
        for hit in hits:
            table.add_row(str(hit.rank), f"{hit.score:.4f}", escape(str(hit.path)), str(hit.pid), str(hit.camid),
                          str(hit.modality))
        console.print(table)
    if visualize:
        lists = [RankList(query, [hit.sample() for hit in hits], [hit.score for hit in hits])
                 for query, hits in zip(queries, results, strict=True)]
        draw_rank_lists({"query": lists}, visualize, f"{index}: top-{top_k}")
        console.print(f"rank lists: {visualize}")


# reid serve -------------------------------------------------------------------------------------------------------
@command(app, "serve")
def serve_command(
        index: GalleryOption,
        model: ModelOptions,
        host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a write token")]
        = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 8000,
        token_file: Annotated[Path | None, typer.Option(help="A file whose first line is the bearer token that "
                                                             "allows writes (or set REID_SERVE_TOKEN); without "
                                                             "one the server is read-only")] = None,
        evaluation: Annotated[list[Path] | None, typer.Option(metavar="REPORT.json", help="A reid evaluate --output "
                                                              "report to show, worst queries first (repeatable)")]
        = None,
        uploads: Annotated[Path | None, typer.Option(help="Where added images are kept (default: "
                                                          "<gallery>.uploads beside the gallery)")] = None,
        cors_origin: Annotated[list[str] | None, typer.Option(metavar="ORIGIN", help="A web origin allowed to call "
                                                              "the API from its pages (repeatable; default: none)")]
        = None,
        max_batch: Annotated[int, typer.Option(min=1, help="Images embedded together (1: no micro-batching)")] = 32,
        max_wait_ms: Annotated[float, typer.Option(min=0, help="How long a search waits for others to join its "
                                                               "batch")] = 5.0,
) -> None:
    """Serve a gallery: a JSON API (OpenAPI page at /docs) and a search page at http://HOST:PORT/."""
    from reid.serve import check_exposure, read_token, require_fastapi

    model.check()
    if not (index / "manifest.json").is_file():
        raise ReidError(f"--index {index}: not a gallery (no manifest.json); build one with reid index build")
    token = read_token(token_file)
    check_exposure(host, token)
    for report in evaluation or []:
        if not regular_file(report):
            raise ReidError(f"--evaluation {report}: no such file")
    require_fastapi()
    import uvicorn

    from reid.serve.app import create_app
    from reid.serve.service import GalleryService

    service = GalleryService(model.embedder(), index, uploads, evaluation or [])
    application = create_app(service, token, cors_origin, max_batch, max_wait_ms / 1000)
    writes = "writes need the bearer token" if token else "read-only: no write token"
    console.print(f"serving {index} ({service.info()['items']} items) on http://{host}:{port}/ ({writes}); "
                  f"the API is described at /docs; Ctrl-C stops")
    uvicorn.run(application, host=host, port=port, log_level="warning")


# reid export / extract ------------------------------------------------------------------------------------------
ExportFormat = choice("ExportFormat", ("onnx",))


@command(app, "export")
def export_command(
        out: Annotated[Path, typer.Option(help="The file to write, e.g. model.onnx")],
        model: ModelOptions,
        export_format: Annotated[ExportFormat, typer.Option("--format", help="Export format")] = ExportFormat.onnx,
        opset: Annotated[int, typer.Option(min=13, help="ONNX opset")] = 17,
) -> None:
    """Export the embedding model (images -> L2-normalised embeddings, dynamic batch) with its preprocessing in the
    file's metadata, and check it against PyTorch with onnxruntime."""
    from reid.errors import require
    from reid.io import ensure_writable

    model.check()
    require("onnx", "export", "reid export")
    ensure_writable(out)
    from reid.engine.export import export_onnx

    embedder = model.embedder()
    with console.status(f"exporting {embedder.description} to {value_of(export_format)}"):
        result = export_onnx(embedder, out, opset)
    shape = "x".join(map(str, result.input_shape[1:]))
    check = "not checked (pip install onnxruntime)" if result.max_difference is None else \
        f"onnxruntime vs PyTorch: max difference {result.max_difference:.2e}"
    console.print(f"wrote {result.path}: images (batch x {shape}) -> embeddings; {check}")


@command(app, "extract")
def extract_command(
        out: Annotated[Path, typer.Option(help="The .npz file to write")],
        model: ModelOptions,
        samples: SampleOptions,
) -> None:
    """Write embeddings with their paths, pids, camids and modalities to an .npz, for your own retrieval."""
    from reid.io import ensure_writable

    model.check()
    samples.check()
    ensure_writable(out)
    from reid.engine.export import extract_archive

    chosen = samples.samples()
    embedder = model.embedder()
    bar, advance = _embedding_progress(len(chosen))
    with bar:
        path = extract_archive(embedder, chosen, out, advance)
    console.print(f"wrote {path}: {len(chosen)} x {embedder.num_features} embeddings with paths, pids, camids, "
                  f"modalities")


# reid compare / pretrain / demo ---------------------------------------------------------------------------------
@command(app, "compare")
def compare_command(
        config: Annotated[Path, typer.Option(help="The shared recipe, e.g. configs/compare_llcm.yaml")],
        backbones: Annotated[str, typer.Option(help="Comma-separated timm names, e.g. attnet_t1,resnet50,pvt_v2_b1")],
        output_dir: Annotated[Path, typer.Option(help="Where runs and the comparison files go")],
        train: Annotated[bool, typer.Option("--train", help="Train every backbone with the recipe")] = False,
        checkpoints: Annotated[Path | None, typer.Option(help="Evaluate existing checkpoints: DIR/<backbone>/best.pt "
                                                                "or DIR/<backbone>.pt")] = None,
        trials: Annotated[int, typer.Option(min=1, help="Gallery trials per evaluation")] = 10,
        data_root: Annotated[Path | None, typer.Option(help="Dataset root (overrides the config)")] = None,
        epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs")] = None,
        device: Annotated[DeviceChoice | None, typer.Option(help="Where to train and measure")] = None,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """Train or evaluate several backbones with one recipe and write comparison.md/.csv/.json and a chart."""
    from reid.config import load_config

    if train == (checkpoints is not None):
        raise ReidError("give exactly one of --train and --checkpoints DIR")
    settings = load_config(config, assignments=assignments, data_root=data_root and str(data_root), epochs=epochs,
                           device=value_of(device), output_dir=str(output_dir), compile=value_of(compile))
    settings.check_paths()
    names = [name.strip() for name in backbones.split(",") if name.strip()]
    from reid.engine.compare import check_backbones, run_comparison

    check_backbones(names, settings, checkpoints)  # every name, size and file, before any work
    with stoppable(lambda: "run the same command again to continue where it stopped"):
        rows = run_comparison(settings, names, output_dir, train, checkpoints, trials, console,
                              typed_command())
    table = Table(title=f"{settings.dataset}: {len(rows)} backbones, mean of {trials} trials, %")
    for column in ("backbone", "input", "params (M)", "GMACs", "img/s infer", "img/s train", "ir2vis mAP",
                   "vis2ir mAP"):
        table.add_column(column, justify="left" if column == "backbone" else "right", no_wrap=column == "backbone")
    for row in rows:
        table.add_row(row.backbone, f"{row.input_size[0]}x{row.input_size[1]}", f"{row.params / 1e6:.2f}",
                      f"{row.macs / 1e9:.2f}", f"{row.inference_images_per_second:.1f}",
                      f"{row.training_images_per_second:.1f}",
                      *(f"{row.report.mean(d)['mAP']:.2f}" if d in row.report.results else "-"
                        for d in ("ir2vis", "vis2ir")))
    console.print(table)
    console.print(f"comparison: {output_dir}/comparison.md, .csv, .json, .png")


@command(app, "pretrain")
def pretrain_command(
        data_root: Annotated[Path | None, typer.Option(help="ImageFolder tree with train/ and val/ (overrides "
                                                             "data_root)")] = None,
        config: Annotated[Path | None, typer.Option(help="Pretraining config (YAML), e.g. "
                                                         "configs/pretrain_attnet_t2.yaml; default: the paper's "
                                                         "recipe (with --resume: the run's own config.yaml)")] = None,
        model: Annotated[str | None, typer.Option(help="attnet_xxs ... attnet_t4, or any timm model")] = None,
        output_dir: Annotated[Path | None, typer.Option(help="Run directory")] = None,
        epochs: Annotated[int | None, typer.Option(min=1)] = None,
        batch_size: Annotated[int | None, typer.Option(min=2, help="Images per process")] = None,
        device: Annotated[DeviceChoice | None, typer.Option(help="Where to train")] = None,
        num_workers: Annotated[int | None, typer.Option(min=0)] = None,
        seed: Annotated[int | None, typer.Option()] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir from its last.pt")]
        = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run that output_dir already holds")]
        = False,
        compile: TrainCompileOption = None,
        assignments: Annotated[list[str] | None, typer.Option(
            "--set", metavar="KEY=VALUE", help="Override any config key, read as YAML (repeatable), e.g. --set "
                                               "mixup=0 --set lr=2e-3; named options win over --set")] = None,
) -> None:
    """ImageNet pretraining with the paper's DeiT-style recipe (also under torchrun for several GPUs)."""
    from reid.config import PretrainConfig, load_config, resume_config

    overrides = dict(data_root=data_root and str(data_root), model=model, output_dir=output_dir and str(output_dir),
                     epochs=epochs, batch_size=batch_size, device=value_of(device), num_workers=num_workers,
                     seed=seed, compile=value_of(compile))
    if config is None and resume and output_dir is not None and (output_dir / "config.yaml").is_file():
        settings = resume_config(output_dir, assignments, PretrainConfig, **overrides)
    else:
        settings = load_config(config, PretrainConfig, assignments, **overrides)
    from reid.engine.pretrain import pretrain
    from reid.engine.runtime import RunDirectory

    run = RunDirectory(Path(settings.output_dir))
    with stoppable(lambda: run.resume_hint("pretrain")):
        pretrain(settings, resume, console, overwrite)
    console.print(f"done: {settings.output_dir}/last.pt and best.pt (load with --pretrained in reid train)")


@command(app, "demo")
def demo_command(
        data_dir: Annotated[Path, typer.Option(help="Where the synthetic LLCM-layout dataset is (made if absent)")]
        = Path("data/demo-llcm"),
        output_dir: Annotated[Path, typer.Option(help="Run directory (a previous complete demo run there is kept "
                                                      "as DIR.previous)")] = Path("runs/demo"),
        config: Annotated[Path, typer.Option(help="Training config")] = Path("configs/demo.yaml"),
        epochs: Annotated[int | None, typer.Option(min=1, help="Override the config's epochs")] = None,
        device: Annotated[DeviceChoice, typer.Option(help="Where to train")] = DeviceChoice.auto,
        assignments: SetOption = None,
) -> None:
    """Synthetic data -> train AttNet -> evaluate both directions -> FAISS gallery -> one query, with pictures."""
    from reid.config import load_config

    settings = load_config(config, assignments=assignments, data_root=str(data_dir), output_dir=str(output_dir),
                           epochs=epochs, device=value_of(device))
    from reid.engine.demo import run_demo

    with stoppable(lambda: "run reid demo again to start over"):
        result = run_demo(settings, console, command=typed_command())
    console.print("\nmAP untrained -> trained: " + ", ".join(
        f"{direction} {before:.1f}% -> {after:.1f}%" for direction, (before, after) in result.map_change().items()))
    console.print(f"everything is in {output_dir}/: best.pt, last.pt, metrics.csv, curves.png, metrics.json, "
                  f"rank_lists.png, query.png, gallery/")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
