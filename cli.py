"""The `reid` command line: thin commands that call into the `reid` package.

Run `reid --help` (or `python cli.py --help`) for the commands. Bad input (a missing file, an unknown backbone,
a malformed config) is reported on one line with exit code 2.
"""
from __future__ import annotations

import functools
import json
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer uses click itself
    from click import exceptions as click_errors

from reid.data.registry import DATASET_HELP, READERS, DatasetName
from reid.data.samples import MODALITIES, Split
from reid.engine.compile import COMPILE_MODES
from reid.errors import ReidError
from reid.index import INDEX_TYPES


class OneLineErrors(TyperGroup):
    """The root command group: a usage error (an unknown option, a value that is not one of the choices) is one
    line on stderr and exit code 2, like the commands' own errors, instead of a framed block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
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


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Direction(str, Enum):
    ir2vis = "ir2vis"
    vis2ir = "vis2ir"
    both = "both"

    def directions(self) -> list[str]:
        return ["ir2vis", "vis2ir"] if self is Direction.both else [self.value]


Modality = Enum("Modality", {name: name for name in MODALITIES}, type=str)
SearchMode = Enum("SearchMode", {mode: mode for reader in READERS for mode in reader.modes}, type=str)
IndexType = Enum("IndexType", {name: name for name in INDEX_TYPES}, type=str)
Compile = Enum("Compile", {name: name for name in COMPILE_MODES}, type=str)


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


class Stop:
    """Why a long command stopped: Ctrl-C (exit 130) or SIGTERM (exit 143: a time limit, a preemption)."""

    reason, exit_code = "interrupted", 130


@contextmanager
def stop_signals() -> Iterator[Stop]:
    """Make SIGTERM stop a long command the way Ctrl-C does (KeyboardInterrupt), so it says how to resume."""
    stop = Stop()

    def terminated(signum, frame) -> None:
        stop.reason, stop.exit_code = "terminated (SIGTERM)", 143
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


# Options shared by several commands ---------------------------------------------------------------------------
DatasetOption = Annotated[DatasetName, typer.Option("--dataset", "-d", help=f"The dataset: {DATASET_HELP}")]
DataRootOption = Annotated[Path, typer.Option(help="Dataset root, as the authors distribute it")]
SearchModeOption = Annotated[SearchMode, typer.Option(help="SYSU-MM01 search: all or indoor")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override any config key, read as YAML (repeatable): --set batch_identities=5 "
                                       "--set pretrained=null; named options win over --set")]
# The model that embeds images: a run checkpoint, or a bare timm backbone as a baseline.
CheckpointOption = Annotated[Path | None, typer.Option(help="A run checkpoint (best.pt / last.pt)",
                                                       rich_help_panel="Model")]
BackboneOption = Annotated[str | None, typer.Option(help="A bare timm backbone's pooled features instead",
                                                    rich_help_panel="Model")]
PretrainedOption = Annotated[Path | None, typer.Option(help="ImageNet weights for --backbone", rich_help_panel="Model")]
InputSizeOption = Annotated[str, typer.Option(help="HxW for --backbone", rich_help_panel="Model")]
DeviceOption = Annotated[Device, typer.Option(help="Where the model runs", rich_help_panel="Model")]
BatchSizeOption = Annotated[int | None, typer.Option(min=1, help="Samples per forward pass (default: 256 on CUDA, "
                                                                 "64 on a CPU)", rich_help_panel="Model")]
CompileOption = Annotated[Compile, typer.Option(help="torch.compile the model: auto = CUDA graphs on CUDA, off on a "
                                                     "CPU", rich_help_panel="Model")]
TrainCompileOption = Annotated[Compile | None, typer.Option(help="torch.compile (overrides compile): auto = CUDA "
                                                                 "graphs on CUDA, off on a CPU")]


def embedder(checkpoint: Path | None, backbone: str | None, pretrained: Path | None, input_size: str,
             device: Device, compile: Compile = Compile.auto, batch_size: int | None = None, **options: Any):
    """The Embedder the model options describe: on CUDA in large batches with AMP (a note is printed when a
    backbone runs at another size)."""
    from reid.engine.inference import Embedder
    from reid.engine.trainer import resolve_amp, resolve_device

    torch_device = resolve_device(device.value)
    batch_size = batch_size or (256 if torch_device.type == "cuda" else 64)
    loaded = Embedder.load(checkpoint, backbone, pretrained, parse_size(input_size, "--input-size"), torch_device,
                           batch_size=batch_size, amp_dtype=resolve_amp("auto", torch_device),
                           compile=compile.value, **options)
    if loaded.size_note:
        errors.print(f"[yellow]note:[/] {loaded.size_note}")
    return loaded


def open_dataset(dataset: DatasetName, data_root: Path, mode: SearchMode = SearchMode.all, verify: bool = True):
    """Parse a dataset root (every problem listed) and, with ``verify``, decode its images with a progress bar."""
    from reid.data import load_dataset

    parsed = load_dataset(dataset.value, data_root, mode=mode.value)
    if verify:
        with progress() as bar:
            task = bar.add_task("checking images", total=None)
            parsed.verify_images(lambda done, total: bar.update(task, completed=done, total=total))
    return parsed


# reid models ----------------------------------------------------------------------------------------------------
@command(app, "models")
def models_command(
        names: Annotated[
            list[str] | None, typer.Argument(help="Backbones to list (default: the paper's comparison set)")
        ] = None,
        size: Annotated[str, typer.Option(help="Input size (HxW) to check each backbone runs at")] = "288x144",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line, one per backbone")]
        = False,
        weights_dir: Annotated[Path, typer.Option(help="Where the authors' AttNet and ACmix weights are kept")]
        = Path("weights"),
) -> None:
    """List backbones with their parameters, MACs at 224x224, whether they run at the re-ID input size, and
    whether the authors' ImageNet weights of each AttNet and ACmix variant are found (and load)."""
    from reid.models.backbones import PAPER_BACKBONES, describe_backbone
    from reid.models.pretrained import weights_status

    probe = parse_size(size)
    names = names or list(PAPER_BACKBONES)
    infos = []
    with progress() as bar:
        task = bar.add_task("measuring backbones", total=len(names))
        for name in names:
            infos.append((describe_backbone(name, probe), weights_status(name, weights_dir)))
            bar.advance(task)
    if as_json:
        for info, weights in infos:
            typer.echo(json.dumps(dict(name=info.name, params=info.params, macs_224=info.macs_224,
                                       input_size=list(info.input_size), note=info.note, weights=weights)))
        return
    table = Table(title="Backbones (params with the ImageNet head; MACs of one 224x224 image)")
    for column in ("backbone", "params (M)", "GMACs @224", f"runs at {probe[0]}x{probe[1]}", "ImageNet weights"):
        table.add_column(column, justify="right" if column in ("params (M)", "GMACs @224") else "left",
                         no_wrap=column == "backbone", overflow="fold")
    for info, weights in infos:
        runs = "yes" if info.note is None else f"no: fixed {info.input_size[0]}x{info.input_size[1]}"
        table.add_row(info.name, f"{info.params / 1e6:.3f}", f"{info.macs_224 / 1e9:.3f}", runs,
                      weights or "timm's (--pretrained FILE)")
    console.print(table)
    if any(weights and not weights.startswith("ok") for _, weights in infos):
        from reid.models.pretrained import RELEASED_WEIGHTS

        pages = sorted({RELEASED_WEIGHTS[info.name].page for info, weights in infos if weights})
        console.print(f"ImageNet weights: the authors' files are linked from {' and '.join(pages)}; save them in "
                      f"{weights_dir}/ under the names above")


# reid data ------------------------------------------------------------------------------------------------------
data_app = typer.Typer(help="Check dataset roots and write synthetic datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@command(data_app, "check")
def data_check_command(
        dataset: DatasetOption,
        root: DataRootOption,
        as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object")] = False,
        images: Annotated[bool, typer.Option(help="Decode every image to find unreadable ones")] = True,
) -> None:
    """Validate a dataset root (index files, listed images, identities) and print its statistics."""
    from reid.data import DatasetError, load_dataset
    from reid.data.images import image_problems

    parsed = load_dataset(dataset.value, root, strict=False)
    problems = list(parsed.problems)
    if images:
        files = list(parsed.all_files())
        with progress() as bar:
            task = bar.add_task("decoding images", total=len(files))
            problems += image_problems(files, lambda done: bar.advance(task, done))
    if problems:
        raise DatasetError(root, problems, show=len(problems))
    stats = parsed.statistics()
    if as_json:
        typer.echo(json.dumps(stats))
        return
    table = Table(title=f"{parsed.title} at {root} (query/gallery: {parsed.directions[0]}, trial 0)")
    for column in ("split", "modality", "ids", "images / tracklets", "frames", "cameras"):
        table.add_column(column, justify="left" if column in ("split", "modality") else "right")
    for split in ("train", "query", "gallery"):
        for modality, entry in stats[split].items():
            table.add_row(split, modality, str(entry["ids"]), str(entry.get("images", entry.get("tracklets"))),
                          str(entry.get("frames", "")), str(entry["cameras"]))
    console.print(table)
    console.print(f"[green]ok[/]: {root} is a usable {parsed.title} root")


@command(data_app, "make-demo")
def data_make_demo_command(
        layout: Annotated[DatasetName, typer.Option(help=f"Whose layout to write: {DATASET_HELP}")],
        out: Annotated[Path, typer.Option(help="Dataset root to create")],
        ids: Annotated[int | None, typer.Option(min=4, help="Number of identities (default: trains in minutes)")]
        = None,
        seed: Annotated[int, typer.Option(help="Random seed")] = 0,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing root")] = False,
) -> None:
    """Write a small synthetic dataset in a real dataset's exact layout (for tests, demos, pipelines)."""
    from reid.data import make_dataset

    with console.status(f"writing a synthetic {layout.value} dataset to {out}"):
        root = make_dataset(layout.value, out, ids, seed, overwrite)
    console.print(f"wrote {root} ({layout.value} layout); check it with: reid data check --dataset {layout.value} "
                  f"--root {root}")


# reid train / evaluate / visualize ------------------------------------------------------------------------------
@command(app, "train")
def train_command(
        config: Annotated[Path, typer.Option(help="Experiment config (YAML), e.g. configs/llcm_attnet_t1.yaml")],
        data_root: Annotated[Path | None, typer.Option(help="Dataset root (overrides data_root)")] = None,
        output_dir: Annotated[Path | None, typer.Option(help="Run directory (overrides output_dir)")] = None,
        backbone: Annotated[str | None, typer.Option(help="Any timm model name (overrides backbone)")] = None,
        epochs: Annotated[int | None, typer.Option(help="Training epochs")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Images per batch (2 x identities x instances)")] = None,
        device: Annotated[Device | None, typer.Option(help="Where to train")] = None,
        pretrained: Annotated[Path | None, typer.Option(help="ImageNet weights for the backbone (a file)")] = None,
        seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
        num_workers: Annotated[int | None, typer.Option(help="Data loading workers")] = None,
        resume: Annotated[bool, typer.Option(help="Continue the run in output_dir from its last.pt")] = False,
        overwrite: Annotated[bool, typer.Option(help="Replace a run that output_dir already holds")] = False,
        tensorboard: Annotated[bool | None, typer.Option("--tensorboard", help="Also write TensorBoard scalars "
                                                                               "(output_dir/tensorboard)")] = None,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """Train a cross-modality re-ID model; checkpoints, train.log, metrics.csv and curves.png go to the run
    directory."""
    from reid.config import load_config
    from reid.engine.trainer import Trainer, process_rank

    settings = load_config(config, assignments=assignments, data_root=data_root and str(data_root),
                           output_dir=output_dir and str(output_dir),
                           backbone=backbone, epochs=epochs, device=device and device.value,
                           pretrained=pretrained and str(pretrained), seed=seed, num_workers=num_workers,
                           tensorboard=tensorboard, compile=compile and compile.value)
    if batch_size is not None:
        settings = settings.with_batch_size(batch_size)
    main_process = process_rank() == 0
    if main_process:
        console.print(f"training {settings.backbone} on {settings.dataset} ({settings.data_root}) -> "
                      f"{settings.output_dir}")
    with stop_signals() as stopped:
        try:
            Trainer(settings, resume=resume, console=console, overwrite=overwrite).fit()
        except KeyboardInterrupt:
            errors.print(f"{stopped.reason}; last.pt keeps the last finished epoch. Continue with: reid train "
                         f"--config {config} --output-dir {settings.output_dir} --resume")
            raise typer.Exit(stopped.exit_code) from None
    if main_process:
        console.print(f"done: {settings.output_dir}/best.pt, last.pt, train.log, metrics.csv, curves.png")


@command(app, "evaluate")
def evaluate_command(
        dataset: DatasetOption,
        data_root: DataRootOption,
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        input_size: InputSizeOption = "288x144",
        device: DeviceOption = Device.auto,
        batch_size: BatchSizeOption = None,
        compile: CompileOption = Compile.auto,
        direction: Annotated[Direction, typer.Option(help="Search direction")] = Direction.both,
        trials: Annotated[int | None, typer.Option(min=1, help="Gallery trials (default: all the protocol has: "
                                                              "10 for LLCM and SYSU-MM01, 1 for VCM-HITSZ)")] = None,
        trial: Annotated[int, typer.Option(min=0, help="RegDB split (0..9)")] = 0,
        rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")] = False,
        output: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here")] = None,
        visualize: Annotated[Path | None, typer.Option(help="Also save a rank-list picture here")] = None,
        sysu_mode: SearchModeOption = SearchMode.all,
        seq_len: Annotated[int, typer.Option(min=1, help="Frames per tracklet (VCM-HITSZ)")] = 6,
        num_workers: Annotated[int | None, typer.Option(min=0)] = None,
        use_index: Annotated[bool, typer.Option(help="Search the gallery through an exact FAISS index")] = False,
) -> None:
    """Rank-1/5/10/20, mAP and mINP under the dataset's official protocol, in both search directions."""
    from reid.engine.evaluate import dataset_rank_lists, evaluate_dataset, evaluation_notes
    from reid.io import ensure_writable
    from reid.visualize import draw_rank_lists

    for path in (output, visualize):
        if path is not None:
            ensure_writable(path)
    model = embedder(checkpoint, backbone, pretrained, input_size, device, compile, batch_size, seq_len=seq_len,
                     num_workers=num_workers)
    parsed = open_dataset(dataset, data_root, sysu_mode)
    for note in evaluation_notes(parsed, direction.directions(), trials):
        errors.print(f"[yellow]note:[/] {note}")
    with progress() as bar:
        task = bar.add_task("embedding", total=None)
        evaluation = evaluate_dataset(model, parsed, direction.directions(), trials or parsed.num_trials, trial,
                                      rerank,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total),
                                      use_index=use_index)
    evaluation.report.command = shlex.join(["reid", *sys.argv[1:]])
    console.print(evaluation.report.table(title=f"{model.description} on {parsed.title}, %"))
    if output:
        evaluation.report.save_json(output)
        console.print(f"metrics: {output}")
    if visualize:
        directions = [d for d in direction.directions() if d in parsed.directions]
        draw_rank_lists(dataset_rank_lists(evaluation.features, parsed, directions, trial), visualize,
                        f"{model.description} on {parsed.title}")
        console.print(f"rank lists: {visualize}")


@command(app, "visualize")
def visualize_command(
        dataset: DatasetOption,
        data_root: DataRootOption,
        output: Annotated[Path, typer.Option(help="Where to save the picture (PNG)")] = Path("rank_lists.png"),
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        input_size: InputSizeOption = "288x144",
        device: DeviceOption = Device.auto,
        queries: Annotated[int, typer.Option(min=1, help="Queries per direction")] = 4,
        top_k: Annotated[int, typer.Option(min=1, help="Gallery matches per query")] = 10,
        direction: Annotated[Direction, typer.Option(help="Search direction")] = Direction.both,
        trial: Annotated[int, typer.Option(min=0, help="RegDB split")] = 0,
        seed: Annotated[int, typer.Option(help="Which queries are drawn")] = 0,
        sysu_mode: SearchModeOption = SearchMode.all,
) -> None:
    """Draw queries with their top-k gallery matches (green correct, red wrong), both directions side by side."""
    from reid.engine.evaluate import dataset_rank_lists
    from reid.io import ensure_writable
    from reid.visualize import draw_rank_lists

    ensure_writable(output)
    model = embedder(checkpoint, backbone, pretrained, input_size, device, Compile.off)
    parsed = open_dataset(dataset, data_root, sysu_mode, verify=False)
    directions = [d for d in direction.directions() if d in parsed.directions]
    panels = dataset_rank_lists(model, parsed, directions, trial, queries, top_k, seed)
    draw_rank_lists(panels, output, f"{model.description} on {parsed.title}")
    console.print(f"rank lists: {output}")


# reid index -----------------------------------------------------------------------------------------------------
index_app = typer.Typer(help="FAISS galleries: build, query, inspect, add to, remove from and compact.",
                        no_args_is_help=True)
app.add_typer(index_app, name="index")
GalleryOption = Annotated[Path, typer.Option(help="Gallery directory")]


# Which samples a gallery or an archive holds: a dataset split, or image files.
ImagesOption = Annotated[list[Path] | None, typer.Option(help="Image files or folders instead of a dataset",
                                                         rich_help_panel="Samples")]
SampleDatasetOption = Annotated[DatasetName | None, typer.Option(help=f"The dataset: {DATASET_HELP}",
                                                                 rich_help_panel="Samples")]
SampleRootOption = Annotated[Path | None, typer.Option(help="Dataset root", rich_help_panel="Samples")]
SplitOption = Annotated[Split, typer.Option(help="Which samples of the dataset", rich_help_panel="Samples")]
SampleDirectionOption = Annotated[Direction, typer.Option(help="Direction whose query/gallery is meant",
                                                          rich_help_panel="Samples")]
TrialOption = Annotated[int, typer.Option(min=0, help="Gallery trial / RegDB split", rich_help_panel="Samples")]


def chosen_samples(images: list[Path] | None, dataset: DatasetName | None, data_root: Path | None, split: Split,
                   direction: Direction, trial: int, sysu_mode: SearchMode, modality: Modality | None = None):
    """The samples the sample options select (exactly one of --images and --dataset with --data-root)."""
    from reid.engine.galleries import dataset_samples, image_samples

    if (images is None) == (dataset is None):
        raise ReidError("give either --dataset with --data-root, or --images")
    if dataset is not None and data_root is None:
        raise ReidError("--dataset needs --data-root")
    modality_name = modality and modality.value
    if images is not None:
        return image_samples(images, modality_name)
    return dataset_samples(open_dataset(dataset, data_root, sysu_mode), split, direction.directions()[0], trial,
                           modality_name)


def _waiting(gallery: Path) -> Callable[[], None]:
    return lambda: errors.print(f"waiting for another process that is writing {gallery}")


def _embedding_progress(total: int):
    bar = progress()
    task = bar.add_task("embedding", total=total)
    return bar, lambda count: bar.advance(task, count)


@command(index_app, "build")
def index_build_command(
        out: Annotated[Path, typer.Option(help="Gallery directory to write")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        input_size: InputSizeOption = "288x144",
        device: DeviceOption = Device.auto,
        batch_size: BatchSizeOption = None,
        compile: CompileOption = Compile.auto,
        dataset: SampleDatasetOption = None,
        data_root: SampleRootOption = None,
        split: SplitOption = Split.gallery,
        modality: Annotated[Modality | None, typer.Option(help="Only samples of this modality",
                                                          rich_help_panel="Samples")] = None,
        direction: SampleDirectionOption = Direction.ir2vis,
        trial: TrialOption = 0,
        images: ImagesOption = None,
        index_type: Annotated[IndexType, typer.Option("--type", help="flat (exact), hnsw or ivfpq")] = IndexType.flat,
        nlist: Annotated[int | None, typer.Option(min=1, help="ivfpq: inverted lists")] = None,
        nprobe: Annotated[int, typer.Option(min=1, help="ivfpq: lists searched")] = 64,
        hnsw_m: Annotated[int, typer.Option(min=4, help="hnsw: links per node")] = 32,
        ef_search: Annotated[int, typer.Option(min=1, help="hnsw: search depth")] = 128,
        sysu_mode: SearchModeOption = SearchMode.all,
) -> None:
    """Embed a dataset split or a folder of images and save a FAISS gallery."""
    from reid.engine.galleries import build_gallery
    from reid.index import IndexSettings, gallery_lock

    samples = chosen_samples(images, dataset, data_root, split, direction, trial, sysu_mode, modality)
    model = embedder(checkpoint, backbone, pretrained, input_size, device, compile, batch_size)
    settings = IndexSettings(index_type.value, hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)
    bar, advance = _embedding_progress(len(samples))
    with bar:
        gallery = build_gallery(model, samples, settings, progress=advance)
    with gallery_lock(out, waiting=_waiting(out)):
        gallery.save(out)
    console.print(f"gallery of {gallery.live_count} items ({gallery.settings.type}, {model.backbone}) -> {out}")


@command(index_app, "add")
def index_add_command(
        index: GalleryOption,
        images: Annotated[list[Path], typer.Option(help="Image files or folders to add")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        input_size: InputSizeOption = "288x144",
        device: DeviceOption = Device.auto,
        modality: Annotated[Modality | None, typer.Option(help="Default: guessed, grayscale = ir")] = None,
        label: Annotated[str | None, typer.Option(help="A free label stored with each new item")] = None,
        compile: CompileOption = Compile.auto,
        pid: Annotated[int | None, typer.Option(min=0, help="The identity of the new items, when known")] = None,
        camid: Annotated[int | None, typer.Option(min=0, help="Their camera, when known")] = None,
) -> None:
    """Embed more images with the gallery's own model and add them."""
    from reid.engine.galleries import image_samples, sample_metadata
    from reid.index import Gallery

    model = embedder(checkpoint, backbone, pretrained, input_size, device, compile)
    samples = [replace(sample, pid=sample.pid if pid is None else pid, camid=sample.camid if camid is None else camid)
               for sample in image_samples(images, modality and modality.value)]
    Gallery.load(index).check_model(model.backbone, model.num_features, model.digest)  # before the embedding work
    embeddings = model.embeddings(samples)
    with Gallery.updating(index, waiting=_waiting(index)) as gallery:
        added = gallery.add(embeddings, [sample_metadata(s, label) for s in samples])
    skipped = f" ({len(samples) - added} already in the gallery)" if added < len(samples) else ""
    console.print(f"added {added} items{skipped}; the gallery now holds {gallery.live_count}")


@command(index_app, "remove")
def index_remove_command(
        index: GalleryOption,
        paths: Annotated[list[str], typer.Argument(help="Paths of the items to remove")],
) -> None:
    """Remove items by path (searches skip them at once; `reid index compact` reclaims their space)."""
    from reid.index import Gallery

    with Gallery.updating(index, waiting=_waiting(index)) as gallery:
        removed = gallery.remove(paths)
        if removed == 0:
            raise ReidError(f"none of the {len(paths)} paths is in the gallery {index}")
    console.print(f"removed {removed} items; {gallery.live_count} remain")


@command(index_app, "compact")
def index_compact_command(index: GalleryOption) -> None:
    """Rebuild a gallery without its removed items (exact for flat and hnsw; ivfpq keeps its compressed codes)."""
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
    typer.echo(json.dumps(asdict(gallery.manifest) | {"by_modality": gallery.counts_by_modality(),
                                                      "removed": gallery.removed_count}, indent=2))


@command(index_app, "query")
def index_query_command(
        index: GalleryOption,
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        input_size: InputSizeOption = "288x144",
        device: DeviceOption = Device.auto,
        image: Annotated[list[Path] | None, typer.Option(help="Query image (repeatable)")] = None,
        images: Annotated[Path | None, typer.Option(help="A folder of query images")] = None,
        top_k: Annotated[int, typer.Option(min=1, help="Results per query")] = 10,
        modality: Annotated[Modality | None, typer.Option(help="Only gallery items of this modality")] = None,
        cameras: Annotated[list[int] | None, typer.Option("--camera", help="Only gallery items from this camera "
                                                                            "(repeatable)")] = None,
        exclude_camera: Annotated[int | None, typer.Option(help="Skip gallery items from this camera, e.g. the "
                                                                "query's own (as the LLCM protocol does)")] = None,
        query_modality: Annotated[Modality | None, typer.Option(help="Default: guessed, grayscale = ir")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result line")] = False,
        visualize: Annotated[Path | None, typer.Option(help="Save the rank lists as a picture")] = None,
) -> None:
    """Search a gallery with query images; the model must be the one that built the gallery."""
    from reid.engine.galleries import image_samples
    from reid.index import Gallery
    from reid.visualize import RankList, draw_rank_lists

    if (image is None) == (images is None):
        raise ReidError("give query images with --image (repeatable) or --images DIR")
    gallery = Gallery.load(index)
    model = embedder(checkpoint, backbone, pretrained, input_size, device, Compile.off)  # a few images: not worth it
    gallery.check_model(model.backbone, model.num_features, model.digest)
    queries = image_samples(image or [images], query_modality and query_modality.value)
    results = gallery.search(model.embeddings(queries), top_k, modality=modality and modality.value,
                             exclude_camids=None if exclude_camera is None else [exclude_camera] * len(queries),
                             camids=cameras)
    for query, hits in zip(queries, results, strict=True):
        if as_json:
            for hit in hits:
                typer.echo(json.dumps({"query": query.path, "rank": hit.rank, "score": round(hit.score, 6),
                                       "path": hit.path, "pid": hit.pid, "camid": hit.camid,
                                       "modality": hit.modality}))
            continue
        table = Table(title=f"{query.path} ({query.modality})")
        for column in ("rank", "score", "path", "pid", "camid", "modality"):
            table.add_column(column, justify="right" if column in ("rank", "score") else "left",
                             overflow="fold")
        for hit in hits:
            table.add_row(str(hit.rank), f"{hit.score:.4f}", str(hit.path), str(hit.pid), str(hit.camid),
                          str(hit.modality))
        console.print(table)
    if visualize:
        lists = [RankList(query, [hit.sample() for hit in hits], [hit.score for hit in hits])
                 for query, hits in zip(queries, results, strict=True)]
        draw_rank_lists({"query": lists}, visualize, f"{index}: top-{top_k}")
        console.print(f"rank lists: {visualize}")


# reid export / extract ------------------------------------------------------------------------------------------
class ExportFormat(str, Enum):
    onnx = "onnx"


@command(app, "export")
def export_command(
        checkpoint: Annotated[Path, typer.Option(help="A run checkpoint (best.pt / last.pt)")],
        out: Annotated[Path, typer.Option(help="The file to write, e.g. model.onnx")],
        export_format: Annotated[ExportFormat, typer.Option("--format", help="Export format")] = ExportFormat.onnx,
        opset: Annotated[int, typer.Option(min=13, help="ONNX opset")] = 17,
) -> None:
    """Export the embedding model (images -> L2-normalised BNNeck features, dynamic batch) and check it against
    PyTorch with onnxruntime."""
    from reid.engine.checkpoint import RunCheckpoint
    from reid.engine.export import export_onnx

    with console.status(f"exporting {checkpoint} to {export_format.value}"):
        result = export_onnx(RunCheckpoint.load(checkpoint), out, opset)
    shape = "x".join(map(str, result.input_shape[1:]))
    check = "not checked (pip install onnxruntime)" if result.max_difference is None else \
        f"onnxruntime vs PyTorch: max difference {result.max_difference:.2e}"
    console.print(f"wrote {result.path}: images (batch x {shape}) -> embeddings; {check}")


@command(app, "extract")
def extract_command(
        out: Annotated[Path, typer.Option(help="The .npz file to write")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        input_size: InputSizeOption = "288x144",
        device: DeviceOption = Device.auto,
        batch_size: BatchSizeOption = None,
        images: ImagesOption = None,
        dataset: SampleDatasetOption = None,
        data_root: SampleRootOption = None,
        split: SplitOption = Split.gallery,
        direction: SampleDirectionOption = Direction.ir2vis,
        trial: TrialOption = 0,
        sysu_mode: SearchModeOption = SearchMode.all,
) -> None:
    """Write features with their paths, pids, camids and modalities to an .npz, for your own retrieval."""
    from reid.engine.export import extract_archive
    from reid.io import ensure_writable

    ensure_writable(out)
    samples = chosen_samples(images, dataset, data_root, split, direction, trial, sysu_mode)
    model = embedder(checkpoint, backbone, pretrained, input_size, device, Compile.auto, batch_size)
    bar, advance = _embedding_progress(len(samples))
    with bar:
        path = extract_archive(model, samples, out, advance)
    console.print(f"wrote {path}: {len(samples)} x {model.num_features} features with paths, pids, camids, "
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
        device: Annotated[Device | None, typer.Option(help="Where to train and measure")] = None,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """Train or evaluate several backbones with one recipe and write comparison.md/.csv/.json and a chart."""
    from reid.config import load_config
    from reid.engine.compare import run_comparison

    if train == (checkpoints is not None):
        raise ReidError("give exactly one of --train and --checkpoints DIR")
    settings = load_config(config, assignments=assignments, data_root=data_root and str(data_root), epochs=epochs,
                           device=device and device.value, output_dir=str(output_dir),
                           compile=compile and compile.value)
    settings.check_paths()
    names = [name.strip() for name in backbones.split(",") if name.strip()]
    with stop_signals() as stopped:
        try:
            rows = run_comparison(settings, names, output_dir, train, checkpoints, trials, console)
        except KeyboardInterrupt:
            errors.print(f"{stopped.reason}; run the same command again to continue where it stopped")
            raise typer.Exit(stopped.exit_code) from None
    table = Table(title=f"{settings.dataset}: {len(rows)} backbones, mean of {trials} trials")
    for column in ("backbone", "input", "params (M)", "GMACs", "img/s infer", "img/s train", "ir2vis mAP",
                   "vis2ir mAP"):
        table.add_column(column, justify="left" if column == "backbone" else "right", no_wrap=column == "backbone")
    for row in rows:
        table.add_row(row.backbone, f"{row.input_size[0]}x{row.input_size[1]}", f"{row.params / 1e6:.2f}",
                      f"{row.macs / 1e9:.2f}", f"{row.inference_images_per_second:.1f}",
                      f"{row.training_images_per_second:.1f}",
                      *(f"{row.metrics[d]['mAP']:.2f}" if d in row.metrics else "-" for d in ("ir2vis", "vis2ir")))
    console.print(table)
    console.print(f"comparison: {output_dir}/comparison.md, .csv, .json, .png")


@command(app, "pretrain")
def pretrain_command(
        data_root: Annotated[Path | None, typer.Option(help="ImageFolder tree with train/ and val/ (overrides "
                                                             "data_root)")] = None,
        config: Annotated[Path | None, typer.Option(help="Pretraining config (YAML), e.g. "
                                                         "configs/pretrain_attnet_t2.yaml; default: the paper's "
                                                         "recipe")] = None,
        model: Annotated[str | None, typer.Option(help="attnet_xxs ... attnet_t4, or any timm model")] = None,
        output_dir: Annotated[Path | None, typer.Option(help="Run directory")] = None,
        epochs: Annotated[int | None, typer.Option(min=1)] = None,
        batch_size: Annotated[int | None, typer.Option(min=2, help="Images per process")] = None,
        device: Annotated[Device | None, typer.Option(help="Where to train")] = None,
        num_workers: Annotated[int | None, typer.Option(min=0)] = None,
        seed: Annotated[int | None, typer.Option()] = None,
        resume: Annotated[bool, typer.Option(help="Continue from output_dir/last.pt")] = False,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """ImageNet pretraining with the paper's DeiT-style recipe (also under torchrun for several GPUs)."""
    from reid.config import PretrainConfig, load_config
    from reid.engine.pretrain import pretrain

    settings = load_config(config, PretrainConfig, assignments, data_root=data_root and str(data_root),
                           model=model,
                           output_dir=output_dir and str(output_dir), epochs=epochs, batch_size=batch_size,
                           device=device and device.value, num_workers=num_workers, seed=seed,
                           compile=compile and compile.value)
    with stop_signals() as stopped:
        try:
            pretrain(settings, resume, console)
        except KeyboardInterrupt:
            errors.print(f"{stopped.reason}; continue with the same command and --resume "
                         f"({settings.output_dir}/last.pt)")
            raise typer.Exit(stopped.exit_code) from None
    console.print(f"done: {settings.output_dir}/last.pt and best.pt (load with --pretrained in reid train)")


@command(app, "demo")
def demo_command(
        data_dir: Annotated[Path, typer.Option(help="Where the synthetic LLCM-layout dataset is (made if absent)")]
        = Path("data/demo-llcm"),
        output_dir: Annotated[Path, typer.Option(help="Run directory")] = Path("runs/demo"),
        config: Annotated[Path, typer.Option(help="Training config")] = Path("configs/demo.yaml"),
        epochs: Annotated[int | None, typer.Option(min=1, help="Override the config's epochs")] = None,
        device: DeviceOption = Device.auto,
        assignments: SetOption = None,
) -> None:
    """Synthetic data -> train AttNet -> evaluate both directions -> FAISS gallery -> one query, with pictures."""
    from reid.config import load_config
    from reid.engine.demo import run_demo

    settings = load_config(config, assignments=assignments, data_root=str(data_dir), output_dir=str(output_dir),
                           epochs=epochs,
                           device=device.value)
    with stop_signals() as stopped:
        try:
            result = run_demo(settings, console)
        except KeyboardInterrupt:
            errors.print(f"{stopped.reason}; continue the training with: reid train --config {config} --data-root "
                         f"{data_dir} --output-dir {output_dir} --resume")
            raise typer.Exit(stopped.exit_code) from None
    console.print("\nmAP untrained -> trained: " + ", ".join(
        f"{direction} {before:.1f}% -> {after:.1f}%" for direction, (before, after) in result.map_change().items()))
    console.print(f"everything is in {output_dir}/: best.pt, last.pt, metrics.csv, curves.png, metrics.json, "
                  f"rank_lists.png, query.png, gallery/")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
