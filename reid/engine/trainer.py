"""The training loop: cross-modality batches, named losses, AMP/DDP, periodic evaluation, atomic checkpoints.

A run directory holds config.yaml (the resolved config), last.pt (everything needed to resume), best.pt (the
model with the best mAP in the default direction), metrics.csv and curves.png. Every epoch's data and random
state are functions of (seed, epoch): the sampler and augmentations are seeded per draw and the torch RNG is
reseeded at each epoch start, so a run killed mid-epoch and resumed with --resume redoes that epoch exactly
and ends where an uninterrupted run ends.
"""
from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from reid.config import TrainConfig
from reid.data import load_dataset
from reid.data.loader import SampleDataset, make_loader
from reid.data.sampler import CrossModalityIdentitySampler
from reid.data.transforms import eval_pipeline, train_pipelines
from reid.engine.checkpoint import RunCheckpoint, build_model, save_checkpoint
from reid.engine.compile import compile_model, resolve_compile
from reid.engine.evaluate import evaluate_dataset
from reid.engine.history import History
from reid.engine.inference import Embedder
from reid.engine.optim import base_lr, make_optimizer, make_scheduler
from reid.errors import ReidError
from reid.io import atomic_write_text, ensure_writable
from reid.losses import ReIDLoss, weighted_sum
from reid.models.weights import unwrap_model
from reid.report import EvaluationReport

# keys that change the model; a run cannot resume under different values
MODEL_KEYS = ("backbone", "input_height", "input_width", "pooling", "modality_stems", "dataset", "trial")


class NonFiniteLossError(ReidError):
    """The loss became NaN or infinite; the run stopped and the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunFiles:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ReidError("--device cuda: no CUDA device is available (use --device cpu)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    if name == "off" or (name == "auto" and device.type != "cuda"):
        return None
    if name == "fp16":
        return torch.float16
    if name == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def pipeline_rate(loader, batches: int = 5) -> float:
    """Images per second the data pipeline delivers on its own (the first ``batches`` batches, workers started)."""
    iterator = iter(loader)
    next(iterator)  # worker start-up is not the pipeline's rate
    count, start = 0, time.perf_counter()
    for _, batch in zip(range(batches), iterator, strict=False):
        count += len(batch[0])
    return count / max(time.perf_counter() - start, 1e-9)


def _duration(seconds: float) -> str:
    """12 s, 4m 05s, 2h 03m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, grad_clip: float | None) -> None:
    """Backward (loss-scaled under fp16), optional gradient-norm clipping, optimiser and scaler update."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return process_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def process_rank() -> int:
    """This process's rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


class Trainer:
    """Trains a ReIDModel as a config describes.

    Args:
        config: The resolved experiment config.
        resume: Continue from the run directory's last.pt when there is one.
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
        self.files = RunFiles(Path(config.output_dir))
        self.rank = 0
        self._log: Console | None = None  # train.log: what the console shows, without colour

    def say(self, message) -> None:
        """Show a line or a table on the console and keep it in train.log (rank 0 only)."""
        if self.rank != 0:
            return
        if self.console is not None:
            self.console.print(message)
        if self._log is not None:
            self._log.print(message)

    def fit(self) -> EvaluationReport | None:
        self.rank, self.world_size, local_rank = init_distributed()
        self.config.check_paths()
        if self.rank == 0:
            self._claim_run_directory()
            self._log = Console(file=open(self.files.log, "a"), width=120, no_color=True,  # noqa: SIM115
                                soft_wrap=True, force_terminal=False)
        try:
            return self._fit(local_rank)
        finally:
            if self._log is not None:
                self._log.file.close()
                self._log = None

    def _fit(self, local_rank: int) -> EvaluationReport | None:
        config = self.config
        self.say(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {'resuming' if self.resume else 'training'} "
                 f"{config.backbone} on {config.dataset} ({config.data_root}) -> {config.output_dir}")
        device = resolve_device(config.device, local_rank)
        amp_dtype = resolve_amp(config.amp, device)
        seed_everything(config.seed, config.deterministic)

        dataset = load_dataset(config.dataset, config.data_root, mode=config.sysu_mode)
        if self.rank == 0:
            self._verify(dataset)
        train_samples = dataset.train(config.trial)
        num_classes = len({s.pid for s in train_samples})
        model = build_model(config, num_classes).to(device)
        if model.size_note:
            self.say(f"[yellow]note:[/] {model.size_note}")
            # the data must then be resized to what the model accepts, and the checkpoint says so
            config = self.config = config.model_copy(update={"input_height": model.input_size[0],
                                                             "input_width": model.input_size[1]})
        sampler = CrossModalityIdentitySampler(train_samples, config.batch_identities, config.batch_instances,
                                               config.seed, self.rank, self.world_size)
        loader = make_loader(SampleDataset(train_samples, train_pipelines(config.augment()), config.seq_len,
                                           train=True),
                             batch_sampler=sampler, num_workers=config.num_workers, device=device,
                             generator=torch.Generator().manual_seed(config.seed))

        if config.channels_last and (device.type == "cuda" or self.world_size > 1):
            # on CUDA for speed; under DDP also on CPU, where conv weight gradients come back channels_last and
            # DDP's buckets must match them (on a single CPU process it costs 8% per step, so not there)
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, len(sampler))
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        criterion = ReIDLoss(config.label_smoothing, config.triplet_margin, config.triplet, config.triplet_normalize,
                             config.triplet_features)
        history, start_epoch, best_map = History(), 0, None
        if self.resume and self.files.last.is_file():
            start_epoch, best_map, history = self._restore(model, optimizer, scheduler, scaler)
            self.say(f"resuming {self.files.root} after epoch {start_epoch}")
        elif self.resume:
            self.say(f"nothing to resume in {self.files.root}; starting a new run")
        if self.rank == 0:
            self.files.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.files.config, config.to_yaml())
        train_model = model
        if self.world_size > 1:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        # the forward pass only: the losses' data-dependent mining and the optimiser stay eager around it
        train_model = compile_model(train_model, config.compile, device)
        if mode := resolve_compile(config.compile, device):
            self.say(f"compiling the model (torch.compile mode {mode}); the first steps are slow")

        writer = self._tensorboard() if config.tensorboard and self.rank == 0 else None
        if self.rank == 0 and start_epoch < config.epochs:
            workers = loader.num_workers
            self.say(f"data pipeline: {pipeline_rate(loader):.0f} images/s with {workers} loading "
                     f"worker{'s' if workers != 1 else ''} (num_workers); the training step's rate is in each epoch "
                     f"line, with the share of it spent waiting for data")
        report = None
        loop_start = time.perf_counter()
        for epoch in range(start_epoch, config.epochs):
            torch.manual_seed(epoch_seed(config.seed, epoch))
            sampler.set_epoch(epoch)
            row = self._train_epoch(train_model, loader, criterion, optimizer, scheduler, scaler, device, amp_dtype,
                                    epoch, len(sampler))
            evaluate_now = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            if evaluate_now and self.rank == 0:
                report = self.evaluate(model, dataset, device, amp_dtype)
                for direction, values in report.to_dict()["results"].items():
                    row.update({f"{direction}_{k}": v for k, v in values.items() if k in ("rank1", "mAP")})
                current = report.mean(dataset.directions[0])["mAP"]
                if best_map is None or current > best_map:
                    best_map = current
                    save_checkpoint(self.files.best, model, config, num_classes, epoch + 1, best_map)
                self.say(report.table(title=f"epoch {epoch + 1}: {dataset.name}, %"))
            if self.rank == 0:
                history.add(row)
                save_checkpoint(self.files.last, model, config, num_classes, epoch + 1, best_map,
                                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                scaler=scaler.state_dict(), history=history.rows,
                                rng={"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist()})
                history.write_csv(self.files.metrics)
                history.plot(self.files.curves, f"{config.backbone} on {config.dataset}")
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch" and isinstance(value, (int, float)):
                            writer.add_scalar(key, value, epoch + 1)
                    writer.flush()
            left = (time.perf_counter() - loop_start) / (epoch + 1 - start_epoch) * (config.epochs - epoch - 1)
            self.say(f"epoch {epoch + 1}/{config.epochs}: loss {row['loss_total']:.4f}, "
                     f"{row['images_per_second']:.1f} images/s ({100 * row['data_wait']:.0f}% waiting for data), "
                     f"{row['seconds']:.0f} s; run ETA {_duration(left)}")
            if self.world_size > 1:
                dist.barrier()
        if writer is not None:
            writer.close()
        if self.world_size > 1:
            dist.destroy_process_group()
        return report

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ReidError("tensorboard: the tensorboard package is not installed (pip install tensorboard, or "
                            "the project's [tensorboard] extra)") from None
        return SummaryWriter(log_dir=str(self.files.tensorboard))

    def _claim_run_directory(self) -> None:
        """Refuse to start over a run the directory already holds (unless resuming or told to overwrite), and
        check it can be written, before any work."""
        files = self.files
        existing = [p.name for p in (files.last, files.best, files.metrics) if p.is_file()]
        if existing and not self.resume:
            if not self.overwrite:
                raise ReidError(f"{files.root} already holds a run ({', '.join(existing)}); continue it with "
                                f"--resume, train into a new --output-dir, or replace it with --overwrite")
            for path in (files.last, files.best, files.metrics, files.curves):
                path.unlink(missing_ok=True)
        ensure_writable(files.config)

    def _verify(self, dataset) -> None:
        with self._progress() as bar:
            task = bar.add_task("checking images", total=None, info="")
            dataset.verify_images(lambda done, total: bar.update(task, completed=done, total=total))

    def _progress(self) -> Progress:
        quiet = self.console is None or not self.console.is_terminal
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                        TimeRemainingColumn(), console=self.console, transient=True, disable=quiet or self.rank != 0)

    def _restore(self, model, optimizer, scheduler, scaler) -> tuple[int, float | None, History]:
        checkpoint = RunCheckpoint.load(self.files.last)
        saved = checkpoint.config
        changed = [k for k in MODEL_KEYS if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise ReidError(f"--resume: {self.files.last} was trained with different "
                            + ", ".join(f"{k} ({getattr(saved, k)!r} vs {getattr(self.config, k)!r})"
                                        for k in changed))
        state = checkpoint.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = History(state.get("history"))
        history.truncate(checkpoint.epoch)
        return checkpoint.epoch, checkpoint.best_map, history

    def _train_epoch(self, model, loader, criterion, optimizer, scheduler, scaler, device, amp_dtype, epoch,
                     steps) -> dict:
        config = self.config
        model.train()
        sums: dict[str, float] = {}
        images_seen, start = 0, time.perf_counter()
        waited, asked = 0.0, time.perf_counter()
        autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
        with self._progress() as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps, info="")
            for step, (images, pids, _, infrared) in enumerate(loader):
                waited += time.perf_counter() - asked
                images = images.to(device, non_blocking=True)
                if config.channels_last and device.type == "cuda" and images.ndim == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
                pids, infrared = pids.to(device), infrared.to(device)
                with autocast:
                    output = model(images, infrared)
                named = criterion(output, pids, infrared)
                total = weighted_sum(named, config.loss_weights())
                if not torch.isfinite(total):
                    values = ", ".join(f"{k} {v.item():.4g}" for k, v in named.items())
                    raise NonFiniteLossError(
                        f"epoch {epoch + 1}, step {step + 1}: the loss is {total.item()} ({values}); the run stopped "
                        f"and {self.files.last} keeps the last good epoch. Lower lr or set grad_clip, then --resume")
                optimizer_step(total, model, optimizer, scaler, config.grad_clip)
                scheduler.step_update(epoch * steps + step + 1)
                for name, value in {"total": total, **named}.items():
                    sums[name] = sums.get(name, 0.0) + value.item()
                images_seen += len(images) * self.world_size
                rate = images_seen / (time.perf_counter() - start)
                lr = base_lr(optimizer)
                bar.update(task, advance=1, info=f"loss {total.item():.3f}  lr {lr:.2e}  {rate:.1f} img/s")
                asked = time.perf_counter()
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, **{f"loss_{k}": v / steps for k, v in sums.items()},
               "lr": base_lr(optimizer), "images_per_second": images_seen / seconds,
               "seconds": seconds, "data_wait": waited / seconds}
        return row

    def evaluate(self, model, dataset, device, amp_dtype, trials: int | None = None) -> EvaluationReport:
        config = self.config
        with self._progress() as bar:
            task = bar.add_task("evaluating", total=None, info="")

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            embedder = Embedder(unwrap_model(model), eval_pipeline(config.augment()), config.backbone,
                                f"{config.backbone} (training)", device=device, batch_size=config.eval_batch_size,
                                seq_len=config.seq_len, num_workers=config.num_workers, amp_dtype=amp_dtype,
                                compile=config.compile)
            return evaluate_dataset(embedder, dataset, trials=trials or config.eval_trials, trial=config.trial,
                                    metric=config.metric, progress=advance).report
