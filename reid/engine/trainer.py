"""Re-ID training: cross-modality batches, named losses, periodic evaluation, on the shared runtime.

A run directory holds config.yaml (the resolved config), last.pt (everything needed to resume), best.pt (the
model with the best mAP, or rank-1 with best_metric: rank1, in the default direction, on the test set or, with
val_identities, on identities held out from training: ``reid.data.validation``), metrics.csv, curves.png and
train.log. The epoch loop, the optimiser step, checkpoints, AMP, DDP and compile are ``reid.engine.runtime``'s;
this module adds what is particular to re-ID: the data, the model and its losses, the evaluation, and the run
directory's rules (one training per directory at a time; a directory that holds a run is only resumed or, when
asked, overwritten).

Every epoch's data and random state are functions of (seed, epoch): the sampler and augmentations are seeded per
draw and torch is reseeded at each epoch start, so a run killed mid-epoch and resumed with --resume redoes that
epoch exactly and ends where an uninterrupted run ends.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from reid.config import TrainConfig
from reid.data import ReIDDataset, load_dataset
from reid.data.loader import SampleDataset, make_loader
from reid.data.sampler import CrossModalityIdentitySampler
from reid.data.samples import relabel
from reid.data.transforms import eval_pipeline, train_pipelines
from reid.data.validation import ValidationSet, hold_out
from reid.engine.checkpoint import build_model, model_entries, read_checkpoint
from reid.engine.evaluate import evaluate_dataset
from reid.engine.inference import Embedder
from reid.engine.optim import base_lr, make_optimizer, make_scheduler
from reid.engine.runtime import (
    Evaluated,
    NonFiniteLossError,
    Optimisation,
    RunDirectory,
    Runtime,
    StepClock,
    TrainingLoop,
    TrainingState,
    TrainingStep,
)
from reid.errors import ReidError, require
from reid.losses import ReIDLoss, weighted_sum
from reid.report import EvaluationReport

__all__ = ["NonFiniteLossError", "RunDirectory", "Trainer", "pipeline_rate"]


@dataclass
class Plan:
    """What ``Trainer._build`` makes and ``Trainer._run`` runs.

    Attributes:
        target: What best.pt is chosen on: the dataset (its test set) or a ``ValidationSet``.
        model: The model as checkpoints store it (``step.model`` is what the loop calls: compiled, DDP).
        unit: What a sample is, for rates: "images" or "tracklets".
    """

    dataset: ReIDDataset
    target: object
    num_classes: int
    model: torch.nn.Module
    sampler: CrossModalityIdentitySampler
    loader: object
    steps: int
    optimisation: Optimisation
    loop: TrainingLoop
    step: TrainingStep
    criterion: ReIDLoss
    unit: str


def pipeline_rate(loader, batches: int = 5) -> float:
    """Samples per second the data pipeline delivers on its own (the first ``batches`` batches, workers started)."""
    iterator = iter(loader)
    next(iterator)  # worker start-up is not the pipeline's rate
    count, start = 0, time.perf_counter()
    for _, batch in zip(range(batches), iterator, strict=False):
        count += len(batch[0])
    return count / max(time.perf_counter() - start, 1e-9)


class Trainer:
    """Trains a ReIDModel as a config describes.

    Args:
        config: The resolved experiment config.
        resume: Continue the run in ``config.output_dir`` from its last.pt when there is one. Settings that differ
            from the run's own config.yaml are applied when a resumed run may change them (the optimiser's, where
            and how it runs; each is said) and refused otherwise (``TrainConfig.resumed_with``).
        console: Where progress and messages go (None: quiet).
        overwrite: Replace a run already in the directory (without it, and without ``resume``, such a directory
            is refused, so no run is lost by a reused --output-dir).
    """

    def __init__(self, config: TrainConfig, resume: bool = False, console: Console | None = None,
                 overwrite: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.console = console
        self.overwrite = overwrite
        self.files = RunDirectory(Path(config.output_dir))
        self.runtime: Runtime | None = None
        self._log: Console | None = None  # train.log: what the console shows, without colour

    @property
    def main(self) -> bool:
        return self.runtime is None or self.runtime.main

    def say(self, message) -> None:
        """Show a line or a table on the console and keep it in train.log (rank 0 only)."""
        if not self.main:
            return
        if self.console is not None:
            self.console.print(message)
        if self._log is not None:
            self._log.print(message)

    def fit(self) -> EvaluationReport | None:
        """Train (or continue) the run; returns the last evaluation's report."""
        config = self.config
        config.check_paths()
        self.runtime = runtime = Runtime.start(config.device, config.amp, config.seed, config.deterministic,
                                               config.threads)
        with ExitStack() as stack:
            stack.callback(runtime.close)
            if runtime.main:
                self.config, notes = stack.enter_context(self.files.claim(config, self.resume, self.overwrite))
                self._log = Console(file=stack.enter_context(open(self.files.log, "a")), width=120,  # noqa: SIM115
                                    no_color=True, soft_wrap=True, force_terminal=False)
                stack.callback(setattr, self, "_log", None)
                for note in runtime.notes + notes:
                    self.say(f"[yellow]note:[/] {note}")
            return self._fit(runtime)

    def _fit(self, runtime: Runtime) -> EvaluationReport | None:
        return self._run(self._build(runtime))

    def _build(self, runtime: Runtime) -> Plan:
        """Everything a run needs: its data, model, sampler and loader, optimiser, loop, step and losses."""
        self.say(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {'resuming' if self.resume else 'training'} "
                 f"{self.config.backbone} on {self.config.dataset} ({self.config.data_root}) -> "
                 f"{self.config.output_dir}")
        dataset = load_dataset(self.config.dataset, self.config.data_root, mode=self.config.sysu_mode)
        if runtime.main:
            self._verify(dataset)
        train_samples, target = self._split(dataset)
        num_classes = len({s.pid for s in train_samples})
        model = build_model(self.config, num_classes).to(runtime.device)
        if model.size_note:
            self.say(f"[yellow]note:[/] {model.size_note}")
            # the data must then be resized to what the model accepts, and the checkpoint says so
            self.config = self.config.model_copy(update={"input_height": model.input_size[0],
                                                         "input_width": model.input_size[1]})
        config = self.config
        sampler = CrossModalityIdentitySampler(train_samples, config.batch_identities, config.batch_instances,
                                               config.seed, runtime.rank, runtime.world_size)
        loader = make_loader(SampleDataset(train_samples, train_pipelines(config.augment()), config.seq_len,
                                           train=True),
                             batch_sampler=sampler, num_workers=self._workers(), device=runtime.device,
                             generator=torch.Generator().manual_seed(config.seed))
        if config.channels_last and (runtime.device.type == "cuda" or runtime.world_size > 1):
            # on CUDA for speed; under DDP also on CPU, where conv weight gradients come back channels_last and
            # DDP's buckets must match them (on a single CPU process it costs 8% per step, so not there)
            model = model.to(memory_format=torch.channels_last)
        steps = len(sampler)
        optimizer = make_optimizer(model, config)
        optimisation = Optimisation(model, optimizer, make_scheduler(optimizer, config, steps),
                                    torch.amp.GradScaler(runtime.device.type,
                                                         enabled=runtime.amp_dtype == torch.float16),
                                    config.grad_clip,
                                    advice=f"continue with a lower rate: reid train --output-dir {config.output_dir} "
                                           f"--resume --set lr={config.lr / 4:.3g} (or set grad_clip)")
        loop = TrainingLoop(runtime, TrainingState(optimisation), self.files, "reid", config, config.seed, self.say)
        self._resume(loop, steps, num_classes)
        train_model = runtime.prepare(model, config.compile, steps * (config.epochs - loop.state.epoch),
                                      on_fallback=self._compile_failed)
        if train_model is not model:
            self.say("compiling the model (torch.compile); the first steps are slow")
        criterion = ReIDLoss(config.label_smoothing, config.triplet_margin, config.metric_loss,
                             config.triplet_normalize, config.triplet_features)
        return Plan(dataset, target, num_classes, model, sampler, loader, steps, optimisation, loop,
                    TrainingStep(train_model, optimisation), criterion, "tracklets" if dataset.tracklets else "images")

    def _split(self, dataset) -> tuple[list, object]:
        """The training samples (their labels 0..N-1) and what best.pt is chosen on: the test set, or the
        identities ``val_identities`` holds out."""
        config = self.config
        train_samples, target = dataset.train(config.trial), dataset
        if config.val_identities:
            train_samples, held_out = hold_out(train_samples, config.val_identities, config.seed,
                                               keep=config.batch_identities)
            target = ValidationSet(dataset, held_out)
            held = f"{target.identities} training identit{'y' if target.identities == 1 else 'ies'}"
            self.say(f"validation: {held} held out ({len(held_out)} samples); best.pt is chosen on them, and the "
                     f"test set is not evaluated during training")
        return relabel(train_samples), target

    def _resume(self, loop: TrainingLoop, steps: int, num_classes: int) -> None:
        if not self.resume:
            return
        if self.files.last.is_file():
            trained_on = read_checkpoint(self.files.last, "reid").get("num_classes")
            if trained_on != num_classes:
                raise ReidError(f"--resume: {self.files.last} was trained on {trained_on} identities, but "
                                f"{self.config.data_root} has {num_classes} training identities; resume on the data "
                                f"it was trained on, or train a new run")
        if loop.resume(steps):
            self.say(f"resuming {self.files.root} after epoch {loop.state.epoch}")
        else:
            self.say(f"nothing to resume in {self.files.root} (no last.pt); starting a new run")

    def _run(self, plan: Plan) -> EvaluationReport | None:
        """The epochs: train, evaluate when due (choosing best.pt), write the curves and scalars."""
        runtime, loop = self.runtime, plan.loop
        if runtime.main and loop.state.epoch < self.config.epochs:
            workers = plan.loader.num_workers
            self.say(f"data pipeline: {pipeline_rate(plan.loader):.0f} {plan.unit}/s with {workers} loading "
                     f"worker{'s' if workers != 1 else ''} (num_workers); the training step's rate is in each epoch "
                     f"line, with the share of it spent waiting for data")
        evaluations: list[EvaluationReport] = []
        writer = self._tensorboard() if self.config.tensorboard and runtime.main else None
        direction = self.config.best_direction or plan.dataset.directions[0]
        first_epoch = loop.state.epoch

        def train_epoch(epoch: int) -> dict[str, float]:
            plan.sampler.set_epoch(epoch)
            return self._train_epoch(plan, epoch, compiled=epoch == first_epoch and plan.step.proven == 0)

        def evaluate(epoch: int) -> Evaluated | None:
            if not self.config.evaluates_after(epoch + 1):
                return None
            report = self.evaluate(plan.model, plan.target, runtime)
            evaluations.append(report)
            prefix = "val_" if plan.target is not plan.dataset else ""
            metrics = {f"{prefix}{name}_{key}": value for name, values in report.to_dict()["results"].items()
                       for key, value in values.items() if key in ("rank1", "mAP")}
            return Evaluated(metrics, report.mean(direction)[self.config.best_metric],
                             report.table(title=f"epoch {epoch + 1}: {plan.target.name}, %"))

        def after_epoch(row: dict[str, float]) -> None:
            loop.state.history.plot(self.files.curves, f"{self.config.backbone} on {self.config.dataset}")
            if writer is not None:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        writer.add_scalar(key, value, row["epoch"])
                writer.flush()

        try:
            loop.run_epochs(self.config.epochs, train_epoch, evaluate, after_epoch,
                            entries=model_entries(self.config, plan.num_classes))
        finally:
            if writer is not None:
                writer.close()
        return evaluations[-1] if evaluations else None

    def _workers(self) -> int | None:
        """Loading workers: the config's, else the runtime's plan (a CPU's), else the device's default."""
        return self.config.num_workers if self.config.num_workers is not None else self.runtime.workers

    def _compile_failed(self, line: str) -> None:
        """Say why the compilation failed (once), and do not try again for this run's evaluations."""
        self.say(f"[yellow]note:[/] {line}")
        self.config = self.config.model_copy(update={"compile": "off"})

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            require("tensorboard", "tensorboard", "--tensorboard")
            raise
        return SummaryWriter(log_dir=str(self.files.tensorboard))

    def _verify(self, dataset) -> None:
        with self._progress() as bar:
            task = bar.add_task("checking images", total=None, info="")
            dataset.verify_images(lambda done, total: bar.update(task, completed=done, total=total))

    def _progress(self) -> Progress:
        quiet = self.console is None or not self.console.is_terminal
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                        TimeRemainingColumn(), console=self.console, transient=True, disable=quiet or not self.main)

    def _train_epoch(self, plan: Plan, epoch: int, compiled: bool) -> dict[str, float]:
        config, runtime, optimisation = self.config, self.runtime, plan.optimisation
        plan.step.model.train()
        sums: dict[str, float] = {}
        clock = StepClock()
        with self._progress() as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=plan.steps, info="")
            for step, (images, pids, _, infrared) in enumerate(plan.loader):
                clock.got_batch()
                images = images.to(runtime.device, non_blocking=True)
                if config.channels_last and runtime.device.type == "cuda" and images.ndim == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
                pids, infrared = pids.to(runtime.device), infrared.to(runtime.device)

                def losses(model, images=images, pids=pids, infrared=infrared):
                    with runtime.autocast():
                        output = model(images, infrared)
                    named = plan.criterion(output, pids, infrared)
                    return weighted_sum(named, config.loss_weights()), named

                total, named = plan.step(losses, epoch * plan.steps + step + 1, f"epoch {epoch + 1}, step {step + 1}",
                                         self.files.last)
                for name, value in {"total": total, **named}.items():
                    sums[name] = sums.get(name, 0.0) + value.item()
                clock.stepped(len(images) * runtime.world_size)
                bar.update(task, advance=1, info=f"loss {total.item():.3f}  lr {base_lr(optimisation.optimizer):.2e}"
                                                 f"  {clock.rate:.1f} {plan.unit}/s")
        timing = clock.row()
        row = {**{f"loss_{k}": v / plan.steps for k, v in sums.items()}, "lr": base_lr(optimisation.optimizer),
               f"{plan.unit}_per_second": timing.pop("samples_per_second"), **timing}
        if compiled:
            row["compile_seconds"] = clock.first_steps_extra()
        return row

    def evaluate(self, model, dataset, runtime: Runtime, trials: int | None = None) -> EvaluationReport:
        config = self.config
        with self._progress() as bar:
            task = bar.add_task("evaluating", total=None, info="")

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            embedder = Embedder(model, eval_pipeline(config.augment()), config.backbone,
                                f"{config.backbone} (training)", device=runtime.device,
                                batch_size=config.eval_batch_size, seq_len=config.seq_len,
                                num_workers=self._workers(), amp_dtype=runtime.amp_dtype, compile=config.compile,
                                on_fallback=self._compile_failed)
            return evaluate_dataset(embedder, dataset, trials=trials or config.eval_trials, trial=config.trial,
                                    metric=config.metric, progress=advance).report
