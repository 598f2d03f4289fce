"""``reid train``, ``reid compare``, ``reid pretrain`` and ``reid demo``: the commands that train."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reid.cli.common import (
    DeviceChoice,
    SetOption,
    ThreadsOption,
    TrainCompileOption,
    choice_option,
    command,
    console,
    group,
    stoppable,
    typed_command,
    value_of,
)
from reid.errors import ReidError, problems_of, refuse

app = group("Train re-ID models and pretrain backbones.")

DeviceOption = Annotated[DeviceChoice | None, choice_option(DeviceChoice, help="Where to train")]
WorkersOption = Annotated[int | None, typer.Option(min=0, metavar="INT", help="Data loading workers")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a run that output_dir already holds")]


def run_problems(settings, resume: bool = False, overwrite: bool = False) -> list[str]:
    """Everything wrong with a training config that can be told without torch: missing paths, an unknown backbone,
    a trial its dataset does not have, a run directory that refuses it, a missing extra. All of them at once."""
    from reid.catalogue import check_backbone
    from reid.data.registry import dataset_class
    from reid.errors import require
    from reid.runs import RunDirectory

    problems = settings.path_problems()
    problems += problems_of(lambda: check_backbone(settings.backbone))
    reader = dataset_class(settings.dataset)
    if reader.trains_per_trial and not 0 <= settings.trial < reader.num_trials:
        problems.append(f"trial: {reader.title} has splits 0..{reader.num_trials - 1}, got {settings.trial}")
    refusal = RunDirectory(Path(settings.output_dir)).refusal(settings, resume, overwrite)
    if refusal is not None:
        problems.append(refusal)
    if settings.tensorboard:
        problems += problems_of(lambda: require("tensorboard", "tensorboard", "--tensorboard"))
    return problems


@command(app, "train")
def train_command(
        config: Annotated[Path | None, typer.Option(metavar="PATH", help="Experiment config (YAML), e.g. "
                                                                         "configs/llcm_attnet_t1.yaml; with --resume, "
                                                                         "the run's own config.yaml by default")]
        = None,
        data_root: Annotated[Path | None, typer.Option(metavar="PATH", help="Dataset root (overrides data_root)")]
        = None,
        output_dir: Annotated[Path | None, typer.Option(metavar="PATH", help="Run directory (overrides output_dir)")]
        = None,
        backbone: Annotated[str | None, typer.Option(metavar="NAME", help="Any timm model name (overrides "
                                                                          "backbone)")] = None,
        epochs: Annotated[int | None, typer.Option(min=1, metavar="INT", help="Training epochs")] = None,
        batch_size: Annotated[int | None, typer.Option(metavar="INT", help="Images per batch (2 x identities x "
                                                                           "instances)")] = None,
        device: DeviceOption = None,
        pretrained: Annotated[Path | None, typer.Option(metavar="PATH", help="ImageNet weights for the backbone (a "
                                                                             "file)")] = None,
        seed: Annotated[int | None, typer.Option(metavar="INT", help="Random seed")] = None,
        num_workers: WorkersOption = None,
        threads: ThreadsOption = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir from its last.pt, "
                                                              "as it was configured (options given beside it that "
                                                              "a resumed run can take are applied and said)")]
        = False,
        overwrite: OverwriteOption = False,
        tensorboard: Annotated[bool | None, typer.Option("--tensorboard", help="Also write TensorBoard scalars "
                                                                               "(output_dir/tensorboard)")] = None,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """Train a cross-modality re-ID model; checkpoints, train.log, metrics.csv and curves.png go to the run
    directory."""
    from reid.config import load_config, resume_config

    overrides = dict(data_root=data_root and str(data_root), output_dir=output_dir and str(output_dir),
                     backbone=backbone, epochs=epochs, device=value_of(device),
                     pretrained=pretrained and str(pretrained), seed=seed, num_workers=num_workers, threads=threads,
                     tensorboard=tensorboard, compile=value_of(compile))
    if config is None:
        if not (resume and output_dir):
            raise ReidError("give --config (or --output-dir RUN --resume to continue a run)")
        settings = resume_config(output_dir, assignments, **overrides)
    else:
        settings = load_config(config, assignments=assignments, **overrides)
    if batch_size is not None:
        settings = settings.with_batch_size(batch_size)
    refuse(run_problems(settings, resume, overwrite))
    from reid.engine.runtime import process_rank, resume_hint
    from reid.engine.trainer import Trainer
    from reid.runs import RunDirectory

    main_process = process_rank() == 0
    run = RunDirectory(Path(settings.output_dir))
    with stoppable(lambda: resume_hint(run, "train")):
        Trainer(settings, resume=resume, console=console, overwrite=overwrite).fit()
    if main_process:
        console.print(f"done: {settings.output_dir}/best.pt, last.pt, train.log, metrics.csv, curves.png")


@command(app, "compare")
def compare_command(
        config: Annotated[Path, typer.Option(metavar="PATH", help="The shared recipe, e.g. configs/compare_llcm.yaml")],
        backbones: Annotated[str, typer.Option(metavar="A,B,C", help="Comma-separated timm names, e.g. "
                                                                     "attnet_t1,resnet50,pvt_v2_b1")],
        output_dir: Annotated[Path, typer.Option(metavar="PATH", help="Where runs and the comparison files go")],
        train: Annotated[bool, typer.Option("--train", help="Train every backbone with the recipe")] = False,
        checkpoints: Annotated[Path | None, typer.Option(metavar="PATH", help="Evaluate existing checkpoints: "
                                                                              "DIR/<backbone>/best.pt or "
                                                                              "DIR/<backbone>.pt")] = None,
        trials: Annotated[int, typer.Option(min=1, metavar="INT", help="Gallery trials per evaluation")] = 10,
        data_root: Annotated[Path | None, typer.Option(metavar="PATH", help="Dataset root (overrides the config)")]
        = None,
        epochs: Annotated[int | None, typer.Option(min=1, metavar="INT", help="Override the recipe's epochs")] = None,
        device: Annotated[DeviceChoice | None, choice_option(DeviceChoice, help="Where to train and measure")] = None,
        threads: ThreadsOption = None,
        compile: TrainCompileOption = None,
        assignments: SetOption = None,
) -> None:
    """Train or evaluate several backbones with one recipe and write comparison.md/.csv/.json and a chart."""
    from reid.config import load_config
    from reid.runs import comparison_problems

    if train == (checkpoints is not None):
        raise ReidError("give exactly one of --train and --checkpoints DIR")
    settings = load_config(config, assignments=assignments, data_root=data_root and str(data_root), epochs=epochs,
                           device=value_of(device), output_dir=str(output_dir), compile=value_of(compile),
                           threads=threads)
    names = [name.strip() for name in backbones.split(",") if name.strip()]
    refuse(settings.path_problems() + comparison_problems(names, settings, checkpoints))  # before any work
    from reid.engine.compare import run_comparison

    with stoppable(lambda: "run the same command again to continue where it stopped"):
        rows = run_comparison(settings, names, output_dir, train, checkpoints, trials, console, typed_command())
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
        data_root: Annotated[Path | None, typer.Option(metavar="PATH", help="ImageFolder tree with train/ and val/ "
                                                                            "(overrides data_root)")] = None,
        config: Annotated[Path | None, typer.Option(metavar="PATH", help="Pretraining config (YAML), e.g. "
                                                                         "configs/pretrain_attnet_t2.yaml; default: "
                                                                         "the paper's recipe (with --resume: the "
                                                                         "run's own config.yaml)")] = None,
        model: Annotated[str | None, typer.Option(metavar="NAME", help="attnet_xxs ... attnet_t4, or any timm "
                                                                       "model")] = None,
        output_dir: Annotated[Path | None, typer.Option(metavar="PATH", help="Run directory")] = None,
        epochs: Annotated[int | None, typer.Option(min=1, metavar="INT", help="Training epochs")] = None,
        batch_size: Annotated[int | None, typer.Option(min=2, metavar="INT", help="Images per process")] = None,
        device: DeviceOption = None,
        num_workers: WorkersOption = None,
        threads: ThreadsOption = None,
        seed: Annotated[int | None, typer.Option(metavar="INT", help="Random seed")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir from its last.pt")]
        = False,
        overwrite: OverwriteOption = False,
        compile: TrainCompileOption = None,
        assignments: Annotated[list[str] | None, typer.Option(
            "--set", metavar="KEY=VALUE", help="Override any config key, read as YAML (repeatable), e.g. --set "
                                               "mixup=0 --set lr=2e-3; named options win over --set")] = None,
) -> None:
    """ImageNet pretraining with the paper's DeiT-style recipe (also under torchrun for several GPUs)."""
    from reid.catalogue import check_backbone
    from reid.config import PretrainConfig, load_config, resume_config
    from reid.io import directory
    from reid.runs import RunDirectory

    overrides = dict(data_root=data_root and str(data_root), model=model, output_dir=output_dir and str(output_dir),
                     epochs=epochs, batch_size=batch_size, device=value_of(device), num_workers=num_workers,
                     threads=threads, seed=seed, compile=value_of(compile))
    if config is None and resume and output_dir is not None and (output_dir / "config.yaml").is_file():
        settings = resume_config(output_dir, assignments, PretrainConfig, **overrides)
    else:
        settings = load_config(config, PretrainConfig, assignments, **overrides)
    run = RunDirectory(Path(settings.output_dir))
    problems = problems_of(lambda: check_backbone(settings.model))
    if not directory(settings.data_root):
        problems.append(f"data_root: no such directory {settings.data_root}")
    if (refusal := run.refusal(settings, resume, overwrite)) is not None:
        problems.append(refusal)
    refuse(problems)
    from reid.engine.pretrain import pretrain
    from reid.engine.runtime import resume_hint

    with stoppable(lambda: resume_hint(run, "pretrain")):
        pretrain(settings, resume, console, overwrite)
    console.print(f"done: {settings.output_dir}/last.pt and best.pt (load with --pretrained in reid train)")


@command(app, "demo")
def demo_command(
        data_dir: Annotated[Path, typer.Option(metavar="PATH", help="Where the synthetic LLCM-layout dataset is "
                                                                    "(made if absent; an empty folder, or one the "
                                                                    "demo made)")] = Path("data/demo-llcm"),
        output_dir: Annotated[Path, typer.Option(metavar="PATH", help="Run directory (a previous complete demo run "
                                                                      "there is kept as DIR.previous)")]
        = Path("runs/demo"),
        config: Annotated[Path, typer.Option(metavar="PATH", help="Training config")] = Path("configs/demo.yaml"),
        epochs: Annotated[int | None, typer.Option(min=1, metavar="INT", help="Override the config's epochs")] = None,
        device: Annotated[DeviceChoice, choice_option(DeviceChoice, help="Where to train")] = DeviceChoice.auto,
        threads: ThreadsOption = None,
        assignments: SetOption = None,
) -> None:
    """Synthetic data -> train AttNet -> evaluate both directions -> FAISS gallery -> one query, with pictures."""
    from reid.config import load_config

    settings = load_config(config, assignments=assignments, data_root=str(data_dir), output_dir=str(output_dir),
                           epochs=epochs, device=value_of(device), threads=threads)
    from reid.runs import demo_problems

    refuse(demo_problems(settings))
    from reid.engine.demo import run_demo

    with stoppable(lambda: "run reid demo again to start over"):
        result = run_demo(settings, console, command=typed_command())
    console.print("\nmAP untrained -> trained: " + ", ".join(
        f"{direction} {before:.1f}% -> {after:.1f}%" for direction, (before, after) in result.map_change().items()))
    console.print(f"everything is in {output_dir}/: best.pt, last.pt, metrics.csv, curves.png, metrics.json, "
                  f"rank_lists.png, query.png, gallery/")


