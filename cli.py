"""The `reid` command line: thin commands that call into the `reid` package.

Run `reid --help` (or `python cli.py --help`) for the commands. Bad input (a missing file, an unknown backbone,
a malformed config) is reported on one line with exit code 2.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
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


def _device(name: str) -> str:
    if name not in ("auto", "cpu", "cuda"):
        raise ReidError(f"--device must be auto, cpu or cuda, got {name!r}")
    return name


@command(app, "train")
def train_command(
        config: Annotated[str, typer.Option(help="Experiment config (YAML), e.g. configs/llcm_attnet_t1.yaml")],
        data_root: Annotated[str | None, typer.Option(help="Dataset root (overrides data_root)")] = None,
        output_dir: Annotated[str | None, typer.Option(help="Run directory (overrides output_dir)")] = None,
        backbone: Annotated[str | None, typer.Option(help="Any timm model name (overrides backbone)")] = None,
        epochs: Annotated[int | None, typer.Option(help="Training epochs")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Images per batch (2 x identities x instances)")] = None,
        device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
        pretrained: Annotated[str | None, typer.Option(help="ImageNet weights for the backbone (a file)")] = None,
        seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
        num_workers: Annotated[int | None, typer.Option(help="Data loading workers")] = None,
        resume: Annotated[bool, typer.Option(help="Continue the run in output_dir from its last.pt")] = False,
) -> None:
    """Train a cross-modality re-ID model; checkpoints, metrics.csv and curves.png go to the run directory."""
    from reid.config import ConfigError, load_config
    from reid.engine.trainer import Trainer, process_rank

    settings = load_config(config, data_root=data_root, output_dir=output_dir, backbone=backbone, epochs=epochs,
                           device=device and _device(device), pretrained=pretrained, seed=seed,
                           num_workers=num_workers)
    if batch_size is not None:
        per_identity = 2 * settings.batch_instances
        if batch_size % per_identity or batch_size // per_identity < 2:
            raise ConfigError(f"--batch-size must be a multiple of 2 x batch_instances = {per_identity} "
                              f"covering at least 2 identities, got {batch_size}")
        settings.batch_identities = batch_size // per_identity
    main_process = process_rank() == 0
    if main_process:
        console.print(f"training {settings.backbone} on {settings.dataset} ({settings.data_root}) -> "
                      f"{settings.output_dir}")
    try:
        Trainer(settings, resume=resume, console=console).fit()
    except KeyboardInterrupt:
        errors.print(f"interrupted; continue with: reid train --config {config} --output-dir "
                     f"{settings.output_dir} --resume")
        raise typer.Exit(130) from None
    if main_process:
        console.print(f"done: {settings.output_dir}/best.pt, last.pt, metrics.csv, curves.png")


@dataclass
class LoadedModel:
    """A model ready to embed images, with what identifies it (for gallery manifests)."""

    model: Any
    augment: Any
    description: str
    backbone: str
    digest: str | None


def _load_model(checkpoint: str | None, backbone: str | None, pretrained: str | None, input_size: str,
                device) -> LoadedModel:
    """A trained model from a run checkpoint, or a bare backbone's pooled features (a baseline)."""
    import torch

    from reid.data.transforms import AugmentConfig
    from reid.engine.checkpoint import file_digest, model_from_checkpoint
    from reid.models.reid_model import ReIDModel

    if (checkpoint is None) == (backbone is None):
        raise ReidError("give either --checkpoint or --backbone")
    if checkpoint is not None:
        model, saved = model_from_checkpoint(checkpoint, device)
        size = (saved["config"]["input_height"], saved["config"]["input_width"])
        return LoadedModel(model, AugmentConfig(height=size[0], width=size[1]),
                           f"{saved['backbone']} from {checkpoint}", saved["backbone"], file_digest(checkpoint))
    height, width = parse_size(input_size, "--input-size")
    torch.manual_seed(0)  # a backbone without weights is the same random network in every process
    model = ReIDModel(backbone, 0, (height, width), pretrained).to(device).eval()
    if model.size_note:
        errors.print(f"[yellow]note:[/] {model.size_note}")
    weights = f"weights {pretrained}" if pretrained else "random weights"
    return LoadedModel(model, AugmentConfig(height=model.input_size[0], width=model.input_size[1]),
                       f"{backbone} pooled features ({weights}, untrained for re-ID)", backbone,
                       file_digest(pretrained) if pretrained else None)


def _directions(direction: str) -> list[str]:
    if direction not in ("ir2vis", "vis2ir", "both"):
        raise ReidError(f"--direction must be ir2vis, vis2ir or both, got {direction!r}")
    return ["ir2vis", "vis2ir"] if direction == "both" else [direction]


def _open_dataset(dataset: str, data_root: str, sysu_mode: str):
    from reid.data import load_dataset

    parsed = load_dataset(dataset, data_root, **({"mode": sysu_mode} if dataset == "sysu" else {}))
    with progress() as bar:
        task = bar.add_task("checking images", total=None)
        parsed.verify_images(lambda done, total: bar.update(task, completed=done, total=total))
    return parsed


CheckpointOption = Annotated[str | None, typer.Option(help="A run checkpoint (best.pt / last.pt)")]
BackboneOption = Annotated[str | None, typer.Option(help="Evaluate a bare timm backbone's pooled features")]
PretrainedOption = Annotated[str | None, typer.Option(help="ImageNet weights for --backbone")]


@command(app, "evaluate")
def evaluate_command(
        dataset: DatasetOption,
        data_root: Annotated[str, typer.Option(help="Dataset root")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        direction: Annotated[str, typer.Option(help="ir2vis, vis2ir or both")] = "both",
        trials: Annotated[int, typer.Option(min=1, help="Gallery trials (LLCM, SYSU-MM01: up to 10)")] = 10,
        trial: Annotated[int, typer.Option(min=0, help="RegDB split (0..9)")] = 0,
        rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")] = False,
        output: Annotated[str | None, typer.Option(help="Write the metrics as JSON here")] = None,
        visualize: Annotated[str | None, typer.Option(help="Also save a rank-list picture here")] = None,
        input_size: Annotated[str, typer.Option(help="HxW for --backbone")] = "288x144",
        batch_size: Annotated[int, typer.Option(min=1)] = 64,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
        sysu_mode: Annotated[str, typer.Option(help="SYSU-MM01 search: all or indoor")] = "all",
        seq_len: Annotated[int, typer.Option(min=1, help="Frames per tracklet (VCM-HITSZ)")] = 6,
        num_workers: Annotated[int | None, typer.Option(min=0)] = None,
        use_index: Annotated[bool, typer.Option(help="Search the gallery through an exact FAISS index")] = False,
) -> None:
    """Rank-1/5/10/20, mAP and mINP under the dataset's official protocol, in both search directions."""
    from reid.data.transforms import eval_pipeline
    from reid.engine.evaluate import evaluate_dataset
    from reid.engine.trainer import resolve_device

    torch_device = resolve_device(_device(device))
    directions = _directions(direction)
    loaded = _load_model(checkpoint, backbone, pretrained, input_size, torch_device)
    model, augment, description = loaded.model, loaded.augment, loaded.description
    parsed = _open_dataset(dataset, data_root, sysu_mode)
    with progress() as bar:
        task = bar.add_task("embedding", total=None)
        report = evaluate_dataset(model, parsed, eval_pipeline(augment), directions, trials, trial, rerank,
                                  batch_size=batch_size, device=torch_device, seq_len=seq_len,
                                  num_workers=num_workers,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total),
                                  use_index=use_index)
    console.print(report.table(title=f"{description} on {dataset}, %"))
    if output:
        report.save_json(output)
        console.print(f"metrics: {output}")
    if visualize:
        _draw(model, parsed, augment, directions, trial, batch_size, torch_device, seq_len, visualize,
              f"{description} on {dataset}")


def _draw(model, parsed, augment, directions, trial, batch_size, device, seq_len, path, title, queries=4,
          top_k=10, seed=0) -> None:
    from reid.data.transforms import eval_pipeline
    from reid.engine.evaluate import extract_features
    from reid.visualize import draw_rank_lists, pick_queries, rank_lists

    panels = {}
    for direction in directions:
        split = parsed.test_split(direction, 0 if not parsed.trains_per_trial else trial)
        chosen = [split.query[i] for i in pick_queries(split.query, queries, seed)]
        pipeline = eval_pipeline(augment)
        query = extract_features(model, chosen, pipeline, batch_size, device, seq_len)
        gallery = extract_features(model, split.gallery, pipeline, batch_size, device, seq_len)
        panels[direction] = rank_lists(chosen, query, split.gallery, gallery, parsed.protocol, top_k)
    draw_rank_lists(panels, path, title)
    console.print(f"rank lists: {path}")


@command(app, "visualize")
def visualize_command(
        dataset: DatasetOption,
        data_root: Annotated[str, typer.Option(help="Dataset root")],
        output: Annotated[str, typer.Option(help="Where to save the picture (PNG)")] = "rank_lists.png",
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        queries: Annotated[int, typer.Option(min=1, help="Queries per direction")] = 4,
        top_k: Annotated[int, typer.Option(min=1, help="Gallery matches per query")] = 10,
        direction: Annotated[str, typer.Option(help="ir2vis, vis2ir or both")] = "both",
        trial: Annotated[int, typer.Option(min=0, help="RegDB split")] = 0,
        seed: Annotated[int, typer.Option(help="Which queries are drawn")] = 0,
        input_size: Annotated[str, typer.Option(help="HxW for --backbone")] = "288x144",
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
        sysu_mode: Annotated[str, typer.Option(help="SYSU-MM01 search: all or indoor")] = "all",
) -> None:
    """Draw queries with their top-k gallery matches (green correct, red wrong), both directions side by side."""
    from reid.data import load_dataset
    from reid.engine.trainer import resolve_device

    torch_device = resolve_device(_device(device))
    loaded = _load_model(checkpoint, backbone, pretrained, input_size, torch_device)
    model, augment, description = loaded.model, loaded.augment, loaded.description
    parsed = load_dataset(dataset, data_root, **({"mode": sysu_mode} if dataset == "sysu" else {}))
    _draw(model, parsed, augment, [d for d in _directions(direction) if d in parsed.directions], trial, 64,
          torch_device, 6, output, f"{description} on {dataset}", queries, top_k, seed)


index_app = typer.Typer(help="FAISS galleries: build, query, inspect, add to and remove from.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _gallery_samples(dataset: str | None, data_root: str | None, split: str, modality: str | None,
                     direction: str, trial: int, images: list[str] | None, sysu_mode: str):
    from reid.engine.galleries import image_samples

    if (images is None) == (dataset is None):
        raise ReidError("give either --dataset with --data-root, or --images")
    if images is not None:
        return image_samples(images, modality)
    if data_root is None:
        raise ReidError("--dataset needs --data-root")
    if split not in ("gallery", "query", "train", "all"):
        raise ReidError(f"--split must be gallery, query, train or all, got {split!r}")
    parsed = _open_dataset(dataset, data_root, sysu_mode)
    test = parsed.test_split(direction if direction in parsed.directions else parsed.directions[0], trial)
    chosen = {"gallery": test.gallery, "query": test.query, "train": parsed.train(trial),
              "all": parsed.train(trial) + test.query + test.gallery}[split]
    if modality is not None:
        chosen = [s for s in chosen if s.modality == modality]
    if not chosen:
        raise ReidError(f"no {modality or ''} samples in the {split} split of {data_root}")
    return list(dict.fromkeys(chosen))


def _embedding_progress(total: int):
    bar = progress()
    task = bar.add_task("embedding", total=total)
    return bar, lambda count: bar.advance(task, count)


@command(index_app, "build")
def index_build_command(
        out: Annotated[str, typer.Option(help="Gallery directory to write")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        dataset: Annotated[str | None, typer.Option(help="llcm, vcm, sysu or regdb")] = None,
        data_root: Annotated[str | None, typer.Option(help="Dataset root")] = None,
        split: Annotated[str, typer.Option(help="gallery, query, train or all")] = "gallery",
        modality: Annotated[str | None, typer.Option(help="Only vis or ir samples")] = None,
        direction: Annotated[str, typer.Option(help="Direction whose query/gallery is meant")] = "ir2vis",
        trial: Annotated[int, typer.Option(min=0, help="Gallery trial / RegDB split")] = 0,
        images: Annotated[list[str] | None, typer.Option(help="Image files or folders instead of a dataset")] = None,
        index_type: Annotated[str, typer.Option("--type", help="flat (exact), hnsw or ivfpq")] = "flat",
        nlist: Annotated[int | None, typer.Option(min=1, help="ivfpq: inverted lists")] = None,
        nprobe: Annotated[int, typer.Option(min=1, help="ivfpq: lists searched")] = 64,
        hnsw_m: Annotated[int, typer.Option(min=4, help="hnsw: links per node")] = 32,
        ef_search: Annotated[int, typer.Option(min=1, help="hnsw: search depth")] = 128,
        input_size: Annotated[str, typer.Option(help="HxW for --backbone")] = "288x144",
        batch_size: Annotated[int, typer.Option(min=1)] = 64,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
        sysu_mode: Annotated[str, typer.Option(help="SYSU-MM01 search: all or indoor")] = "all",
) -> None:
    """Embed a dataset split or a folder of images and save a FAISS gallery."""
    from reid.data.transforms import eval_pipeline
    from reid.engine.galleries import build_gallery
    from reid.engine.trainer import resolve_device
    from reid.index import IndexSettings

    torch_device = resolve_device(_device(device))
    loaded = _load_model(checkpoint, backbone, pretrained, input_size, torch_device)
    samples = _gallery_samples(dataset, data_root, split, modality, direction, trial, images, sysu_mode)
    settings = IndexSettings(index_type, hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)
    bar, advance = _embedding_progress(len(samples))
    with bar:
        gallery = build_gallery(loaded.model, samples, eval_pipeline(loaded.augment), loaded.backbone,
                                loaded.digest, settings, batch_size, torch_device, progress=advance)
    gallery.save(out)
    console.print(f"gallery of {gallery.live_count} items ({gallery.settings.type}, {loaded.backbone}) -> {out}")


@command(index_app, "add")
def index_add_command(
        index: Annotated[str, typer.Option(help="Gallery directory")],
        images: Annotated[list[str], typer.Option(help="Image files or folders to add")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        modality: Annotated[str | None, typer.Option(help="vis or ir (default: guessed, grayscale = ir)")] = None,
        label: Annotated[str | None, typer.Option(help="A free label stored with each new item")] = None,
        input_size: Annotated[str, typer.Option(help="HxW for --backbone")] = "288x144",
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Embed more images with the gallery's own model and add them."""
    from reid.data.transforms import eval_pipeline
    from reid.engine.galleries import embed_samples, image_samples, sample_metadata
    from reid.engine.trainer import resolve_device
    from reid.index import Gallery

    torch_device = resolve_device(_device(device))
    gallery = Gallery.load(index)
    loaded = _load_model(checkpoint, backbone, pretrained, input_size, torch_device)
    gallery.check_model(loaded.backbone, loaded.model.num_features, loaded.digest)
    samples = image_samples(images, modality)
    embeddings = embed_samples(loaded.model, samples, eval_pipeline(loaded.augment), device=torch_device)
    gallery.add(embeddings, [sample_metadata(s, label) for s in samples])
    gallery.save(index)
    console.print(f"added {len(samples)} items; the gallery now holds {gallery.live_count}")


@command(index_app, "remove")
def index_remove_command(
        index: Annotated[str, typer.Option(help="Gallery directory")],
        paths: Annotated[list[str], typer.Argument(help="Paths of the items to remove")],
) -> None:
    """Remove items by path (searches skip them at once)."""
    from reid.index import Gallery

    gallery = Gallery.load(index)
    removed = gallery.remove(paths)
    if removed == 0:
        raise ReidError(f"none of the {len(paths)} paths is in the gallery {index}")
    gallery.save(index)
    console.print(f"removed {removed} items; {gallery.live_count} remain")


@command(index_app, "info")
def index_info_command(index: Annotated[str, typer.Option(help="Gallery directory")]) -> None:
    """Print a gallery's manifest."""
    from reid.index import Gallery

    gallery = Gallery.load(index)
    manifest = asdict(gallery.manifest)
    modalities = {}
    for row in gallery.metadata:
        if not row["removed"]:
            modalities[row.get("modality")] = modalities.get(row.get("modality"), 0) + 1
    console.print_json(json.dumps(manifest | {"by_modality": modalities, "removed": len(gallery.metadata) -
                                              gallery.live_count}))


@command(index_app, "query")
def index_query_command(
        index: Annotated[str, typer.Option(help="Gallery directory")],
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        pretrained: PretrainedOption = None,
        image: Annotated[list[str] | None, typer.Option(help="Query image (repeatable)")] = None,
        images: Annotated[str | None, typer.Option(help="A folder of query images")] = None,
        top_k: Annotated[int, typer.Option(min=1, help="Results per query")] = 10,
        modality: Annotated[str | None, typer.Option(help="Only gallery items of this modality (vis or ir)")] = None,
        query_modality: Annotated[str | None, typer.Option(help="vis or ir (default: guessed)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result line")] = False,
        visualize: Annotated[str | None, typer.Option(help="Save the rank lists as a picture")] = None,
        input_size: Annotated[str, typer.Option(help="HxW for --backbone")] = "288x144",
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Search a gallery with query images; the model must be the one that built the gallery."""
    from reid.data.samples import Sample
    from reid.data.transforms import eval_pipeline
    from reid.engine.galleries import embed_samples, image_samples
    from reid.engine.trainer import resolve_device
    from reid.index import Gallery

    if modality not in (None, "vis", "ir"):
        raise ReidError(f"--modality must be vis or ir, got {modality!r}")
    if (image is None) == (images is None):
        raise ReidError("give query images with --image (repeatable) or --images DIR")
    torch_device = resolve_device(_device(device))
    gallery = Gallery.load(index)
    loaded = _load_model(checkpoint, backbone, pretrained, input_size, torch_device)
    gallery.check_model(loaded.backbone, loaded.model.num_features, loaded.digest)
    queries = image_samples(image or [images], query_modality)
    embeddings = embed_samples(loaded.model, queries, eval_pipeline(loaded.augment), device=torch_device)
    results = gallery.search(embeddings, top_k, modality=modality)
    if as_json:
        for query, hits in zip(queries, results, strict=True):
            for hit in hits:
                typer.echo(json.dumps({"query": query.path, "rank": hit.rank, "score": round(hit.score, 6),
                                       "path": hit.path, "pid": hit.pid, "camid": hit.camid,
                                       "modality": hit.modality}))
    else:
        for query, hits in zip(queries, results, strict=True):
            table = Table(title=f"{query.path} ({query.modality})")
            for column in ("rank", "score", "path", "pid", "camid", "modality"):
                table.add_column(column, justify="right" if column in ("rank", "score") else "left")
            for hit in hits:
                table.add_row(str(hit.rank), f"{hit.score:.4f}", str(hit.path), str(hit.pid), str(hit.camid),
                              str(hit.modality))
            console.print(table)
    if visualize:
        from reid.visualize import RankList, draw_rank_lists

        def as_sample(hit) -> Sample:
            path = tuple(hit.path) if isinstance(hit.path, list) else hit.path
            return Sample(path, -1 if hit.pid is None else hit.pid, -1 if hit.camid is None else hit.camid,
                          hit.modality or "vis")

        lists = [RankList(q, [as_sample(h) for h in hits], [h.score for h in hits])
                 for q, hits in zip(queries, results, strict=True)]
        draw_rank_lists({"query": lists}, visualize, f"{index}: top-{top_k}")
        console.print(f"rank lists: {visualize}")


@command(app, "compare")
def compare_command(
        config: Annotated[str, typer.Option(help="The shared recipe, e.g. configs/compare_llcm.yaml")],
        backbones: Annotated[str, typer.Option(help="Comma-separated timm names, e.g. attnet_t1,resnet50,pvt_v2_b1")],
        output_dir: Annotated[str, typer.Option(help="Where runs and the comparison files go")],
        train: Annotated[bool, typer.Option("--train", help="Train every backbone with the recipe")] = False,
        checkpoints: Annotated[str | None, typer.Option(help="Evaluate existing checkpoints: DIR/<backbone>/best.pt "
                                                               "or DIR/<backbone>.pt")] = None,
        trials: Annotated[int, typer.Option(min=1, help="Gallery trials per evaluation")] = 10,
        data_root: Annotated[str | None, typer.Option(help="Dataset root (overrides the config)")] = None,
        epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs")] = None,
        device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
) -> None:
    """Train or evaluate several backbones with one recipe and write comparison.md/.csv/.json and a chart."""
    from reid.config import load_config
    from reid.engine.compare import run_comparison

    if train == (checkpoints is not None):
        raise ReidError("give exactly one of --train and --checkpoints DIR")
    settings = load_config(config, data_root=data_root, epochs=epochs, device=device and _device(device),
                           output_dir=output_dir)
    settings.check_paths()
    names = [name.strip() for name in backbones.split(",") if name.strip()]
    try:
        rows = run_comparison(settings, names, output_dir, train, checkpoints, trials, console)
    except KeyboardInterrupt:
        errors.print("interrupted; run the same command again to continue where it stopped")
        raise typer.Exit(130) from None
    table = Table(title=f"{settings.dataset}: {len(rows)} backbones, mean of {trials} trials")
    for column in ("backbone", "input", "params (M)", "GMACs", "img/s infer", "img/s train", "ir2vis mAP",
                   "vis2ir mAP"):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    for row in rows:
        table.add_row(row.backbone, f"{row.input_size[0]}x{row.input_size[1]}", f"{row.params / 1e6:.2f}",
                      f"{row.macs / 1e9:.2f}", f"{row.inference_images_per_second:.1f}",
                      f"{row.training_images_per_second:.1f}",
                      *(f"{row.metrics[d]['mAP']:.2f}" if d in row.metrics else "-" for d in ("ir2vis", "vis2ir")))
    console.print(table)
    console.print(f"comparison: {output_dir}/comparison.md, .csv, .json, .png")


@command(app, "pretrain")
def pretrain_command(
        data_root: Annotated[str, typer.Option(help="ImageFolder tree with train/ and val/ (one folder per class)")],
        model: Annotated[str, typer.Option(help="attnet_xxs ... attnet_t4, or any timm model")] = "attnet_t2",
        output_dir: Annotated[str, typer.Option(help="Run directory")] = "runs/pretrain",
        epochs: Annotated[int, typer.Option(min=1)] = 300,
        batch_size: Annotated[int, typer.Option(min=2, help="Images per process")] = 128,
        lr: Annotated[float, typer.Option(help="For a global batch of 4096; scaled linearly")] = 4e-3,
        weight_decay: Annotated[float, typer.Option(min=0)] = 0.05,
        warmup_epochs: Annotated[int, typer.Option(min=0)] = 5,
        drop_path_rate: Annotated[float | None, typer.Option(help="Default: the variant's own rate")] = None,
        input_size: Annotated[int, typer.Option(min=16)] = 224,
        mixup: Annotated[float, typer.Option(min=0)] = 0.8,
        cutmix: Annotated[float, typer.Option(min=0)] = 1.0,
        model_ema: Annotated[bool, typer.Option(help="Keep an EMA of the weights")] = True,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
        num_workers: Annotated[int, typer.Option(min=0)] = 8,
        seed: Annotated[int, typer.Option()] = 0,
        resume: Annotated[bool, typer.Option(help="Continue from output_dir/last.pt")] = False,
) -> None:
    """ImageNet pretraining with the paper's DeiT-style recipe (also under torchrun for several GPUs)."""
    from reid.engine.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(data_root, model, output_dir, epochs, batch_size, lr, weight_decay, warmup_epochs,
                            drop_path_rate=drop_path_rate, input_size=input_size, mixup=mixup, cutmix=cutmix,
                            model_ema=model_ema, device=_device(device), num_workers=num_workers, seed=seed)
    try:
        pretrain(config, resume, console)
    except KeyboardInterrupt:
        errors.print(f"interrupted; continue with the same command and --resume ({output_dir}/last.pt)")
        raise typer.Exit(130) from None
    console.print(f"done: {output_dir}/last.pt and best.pt (load with --pretrained in reid train)")


@command(app, "demo")
def demo_command(
        data_dir: Annotated[str, typer.Option(help="Where the synthetic LLCM-layout dataset is (made if absent)")]
        = "data/demo-llcm",
        output_dir: Annotated[str, typer.Option(help="Run directory")] = "runs/demo",
        config: Annotated[str, typer.Option(help="Training config")] = "configs/demo.yaml",
        epochs: Annotated[int | None, typer.Option(min=1, help="Override the config's epochs")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Synthetic data -> train AttNet -> evaluate both directions -> FAISS gallery -> one query, with pictures."""
    from pathlib import Path

    from reid.config import load_config
    from reid.data import load_dataset
    from reid.data.synthetic import make_dataset
    from reid.data.transforms import eval_pipeline
    from reid.engine.checkpoint import file_digest, model_from_checkpoint
    from reid.engine.evaluate import evaluate_dataset
    from reid.engine.galleries import build_gallery, embed_samples
    from reid.engine.trainer import Trainer, resolve_device
    from reid.index import IndexSettings
    from reid.models.reid_model import ReIDModel
    from reid.visualize import RankList, draw_rank_lists

    root, run = Path(data_dir), Path(output_dir)
    torch_device = resolve_device(_device(device))
    if not (root / "idx/test_id.txt").is_file():
        with console.status(f"1/5 writing the synthetic LLCM-layout dataset to {root}"):
            make_dataset("llcm", root, overwrite=root.exists())
    console.print(f"1/5 dataset: {root} (LLCM layout, synthetic)")
    settings = load_config(config, data_root=str(root), output_dir=str(run), epochs=epochs, device=_device(device))
    dataset = load_dataset("llcm", root)
    pipeline = eval_pipeline(settings.augment())

    import torch

    torch.manual_seed(settings.seed)
    untrained = ReIDModel(settings.backbone, 0, settings.input_size).to(torch_device).eval()
    before = evaluate_dataset(untrained, dataset, pipeline, trials=10, device=torch_device)
    console.print(before.table(title=f"2/5 untrained {settings.backbone} (random weights), 10 trials, %"))

    console.print(f"3/5 training {settings.backbone} for {settings.epochs} epochs on {torch_device} -> {run}")
    try:
        Trainer(settings, console=console).fit()
    except KeyboardInterrupt:
        errors.print(f"interrupted; continue with: reid train --config {config} --data-root {root} "
                     f"--output-dir {run} --resume")
        raise typer.Exit(130) from None
    model, _ = model_from_checkpoint(run / "best.pt", torch_device)
    after = evaluate_dataset(model, dataset, pipeline, trials=10, device=torch_device)
    after.save_json(run / "metrics.json")
    console.print(after.table(title=f"4/5 trained {settings.backbone} (best.pt), 10 trials, %"))

    split = dataset.test_split("ir2vis", 0)
    gallery = build_gallery(model, split.gallery, pipeline, settings.backbone, file_digest(run / "best.pt"),
                            IndexSettings("flat"), device=torch_device)
    gallery.save(run / "gallery")
    query = split.query[0]
    # as the LLCM protocol does, the query's own camera is left out of the search
    hits = gallery.search(embed_samples(model, [query], pipeline, device=torch_device), 10,
                          exclude_camids=[query.camid])[0]
    table = Table(title=f"5/5 FAISS gallery ({gallery.live_count} visible images): infrared query id {query.pid}, "
                        f"camera {query.camid} left out")
    for column in ("rank", "score", "pid", "camid", "match"):
        table.add_column(column, justify="right")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", str(hit.pid), str(hit.camid),
                      "[green]yes[/]" if hit.pid == query.pid else "[red]no[/]")
    console.print(table)
    _draw(model, dataset, settings.augment(), ["ir2vis", "vis2ir"], 0, 64, torch_device, 6, run / "rank_lists.png",
          f"{settings.backbone} on synthetic LLCM")
    draw_rank_lists({"infrared query -> visible gallery (FAISS)": [RankList(
        query, [next(s for s in split.gallery if s.path == h.path) for h in hits], [h.score for h in hits])]},
        run / "query.png", "FAISS query")
    summary = {d: (before.mean(d)["mAP"], after.mean(d)["mAP"]) for d in ("ir2vis", "vis2ir")}
    console.print("\nmAP untrained -> trained: " + ", ".join(f"{d} {a:.1f}% -> {b:.1f}%" for d, (a, b) in
                                                           summary.items()))
    console.print(f"everything is in {run}/: best.pt, last.pt, metrics.csv, curves.png, metrics.json, "
                  f"rank_lists.png, query.png, gallery/")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
