"""How a training process runs, for ``reid train`` and ``reid pretrain`` alike.

One place for what every training loop needs around its own forward pass and loss:

* where it runs: the device, AMP, distributed processes under torchrun (``Runtime``);
* seeding: every epoch starts from a seed that depends only on (seed, epoch), so a run killed mid-epoch and resumed
  redoes that epoch exactly (``epoch_seed``);
* the model to train: wrapped for DDP and compiled where it pays, falling back to eager with one line when the
  compilation fails (``Runtime.prepare``);
* the optimiser step: the non-finite loss check, backward (loss-scaled under fp16), gradient clipping, the update,
  the per-step schedule and the EMA (``Optimisation.step``);
* the checkpoint contract: one format for both kinds of run, written atomically (``reid.engine.checkpoint``), with
  everything a resume needs (``TrainingState``);
* the epoch loop: train, evaluate when due, keep the best, write last.pt and the history, print a line with the
  run's ETA (``TrainingLoop``);
* the run directory (``reid.runs.RunDirectory``): one training at a time, never trained over unless resumed or
  overwritten, and the hint a stopped run leaves (``resume_hint``).
"""
from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reid import threads as threads_module
from reid.engine.checkpoint import read_checkpoint, write_checkpoint
from reid.engine.compile import EagerFallback, compile_model
from reid.engine.history import History
from reid.errors import ReidError
from reid.models.weights import CheckpointError, error_summary, unwrap_model
from reid.runs import RunDirectory
from reid.settings import AmpMode, CompileMode, DeviceName


class NonFiniteLossError(ReidError):
    """The loss became NaN or infinite; the run stopped and the last good checkpoint is kept."""


def resolve_device(name: DeviceName, local_rank: int = 0) -> torch.device:
    """"auto" is CUDA when torch sees a GPU, else the CPU; "cuda" without a GPU is a ReidError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ReidError("--device cuda: no CUDA device is available (use --device cpu)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_amp(name: AmpMode, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: "auto" is bf16 on CUDA (fp16 where the GPU lacks bf16) and float32 on a CPU."""
    if name == "off" or (name == "auto" and device.type != "cuda"):
        return None
    if name == "fp16":
        return torch.float16
    if name == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of an epoch: a function of (seed, epoch) alone."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def process_rank() -> int:
    """This process's rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def resume_hint(run: RunDirectory, command: str) -> str:
    """What a stopped run keeps and the command that continues it."""
    if not run.last.is_file():
        return f"no epoch finished, so there is nothing to resume in {run.root}"
    epoch = read_checkpoint(run.last, "reid" if command == "train" else "pretrain")["epoch"]
    return f"{run.last} keeps epoch {epoch}. Continue with: reid {command} --output-dir {run.root} --resume"


@dataclass
class Runtime:
    """Where a training process runs.

    Attributes:
        device: Its device (under torchrun, the GPU of its local rank).
        amp_dtype: The autocast dtype, or None for float32.
        rank: Its rank under torchrun (0 otherwise).
        world_size: Processes in the run.
        workers: Loading workers when the config asks for none (a CPU's plan; None: the device's default).
        notes: What the user should hear about where it runs (a busy machine's fewer threads).
    """

    device: torch.device
    amp_dtype: torch.dtype | None = None
    rank: int = 0
    world_size: int = 1
    workers: int | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, device: DeviceName, amp: AmpMode, seed: int, deterministic: bool = False,
              threads: int | None = None) -> Runtime:
        """Join the process group under torchrun, pick the device and AMP, size the CPU threads (``reid.threads``;
        ``notes`` says when a busy machine gets fewer), seed every generator."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        resolved = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
        notes, workers = [], None
        if resolved.type == "cpu":
            plan = threads_module.plan(threads)
            threads_module.apply(plan)
            notes += [plan.note] if plan.note else []
            workers = plan.workers
        seed_everything(seed, deterministic)
        return cls(resolved, resolve_amp(amp, resolved), process_rank(), world_size, workers, notes)

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and speaks."""
        return self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()

    def prepare(self, model: nn.Module, compile: CompileMode, steps: int,
                on_fallback: Callable[[str], None] | None = None) -> nn.Module:
        """The model the loop calls: wrapped for DDP under torchrun and compiled as ``compile`` says for a run of
        ``steps`` optimiser steps (falling back to eager, with ``on_fallback(line)``, if compiling fails).
        Checkpoints are written from the unwrapped model."""
        if self.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return compile_model(model, compile, self.device, steps=steps, on_fallback=on_fallback)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class Optimisation:
    """The optimiser and what steps with it: schedule (stepped per update), loss scaler, gradient clipping, EMA."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a timm Scheduler (step_update per optimiser update)
    scaler: torch.amp.GradScaler
    grad_clip: float | None = None
    ema: nn.Module | None = None  # timm's ModelEmaV3
    advice: str = "lower lr or set grad_clip, then --resume"

    def step(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], update: int, where: str,
             last: Path) -> None:
        """One update from ``loss`` (the ``update``-th of the run, counted from 1). A NaN or infinite loss stops the
        run with a NonFiniteLossError naming ``where`` and the parts of the loss, before any weight changes."""
        if not torch.isfinite(loss):
            values = ", ".join(f"{name} {value.item():.4g}" for name, value in parts.items())
            raise NonFiniteLossError(f"{where}: the loss is {loss.item()} ({values}); the run stopped and {last} "
                                     f"keeps the last good epoch. {self.advice[0].upper()}{self.advice[1:]}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step_update(update)
        if self.ema is not None:
            self.ema.update(self.model, step=update)


class TrainingStep:
    """One optimiser step, the same for ``reid train`` and ``reid pretrain``: the forward pass through the model the
    loop calls (compiled or not) and the losses (``losses``, given that model), then ``Optimisation.step``.

    While a compiled model has not yet made a whole step, forward *and* backward run inside the eager fallback:
    AOTAutograd compiles the backward at the first ``loss.backward()``, so a compilation can fail there too. Such
    a step is redone eagerly from where it began (the model's buffers, such as BatchNorm statistics, and the
    random state put back), so the run goes on with the numbers an eager run has, and ``on_fallback`` says why in
    one line. Steps after the first whole ones are plain.
    """

    PROVING_STEPS = 3  # CUDA graphs record on the third call

    def __init__(self, model: Callable, optimisation: Optimisation) -> None:
        self.model, self.optimisation = model, optimisation
        self.proven = 0 if isinstance(model, EagerFallback) else self.PROVING_STEPS

    def __call__(self, losses: Callable[[Callable], tuple[torch.Tensor, dict[str, torch.Tensor]]], update: int,
                 where: str, last: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's total loss and its named parts (``losses(model)`` computes them)."""
        if self.proven >= self.PROVING_STEPS or self.model.fell_back:
            return self._step(losses, update, where, last)
        saved = self._state()
        try:
            result = self._step(losses, update, where, last)
        except ReidError:
            raise
        except Exception as error:  # noqa: BLE001  (a compiler's error has many types)
            if self.model.fell_back:
                raise  # the forward ran eagerly already: this is no compilation's error
            self._restore(saved)
            self.model.fall_back(error)
            return self._step(losses, update, where, last)
        self.proven += 1
        return result

    def _step(self, losses, update: int, where: str, last: Path):
        total, named = losses(self.model)
        self.optimisation.step(total, named, update, where, last)
        return total, named

    def _state(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        buffers = {name: buffer.clone() for name, buffer in unwrap_model(self.optimisation.model).named_buffers()}
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return buffers, torch.get_rng_state(), cuda

    def _restore(self, saved) -> None:
        buffers, rng, cuda = saved
        with torch.no_grad():
            for name, buffer in unwrap_model(self.optimisation.model).named_buffers():
                buffer.copy_(buffers[name])
        torch.set_rng_state(rng)
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
        self.optimisation.optimizer.zero_grad(set_to_none=True)


@dataclass
class TrainingState:
    """Everything a checkpoint holds and a resume restores.

    Attributes:
        optimisation: The model, optimiser, schedule, scaler and EMA.
        history: One row per finished epoch.
        epoch: Epochs finished.
        best: The best score so far (what ``best.pt`` holds), or None before the first evaluation.
        export: The model's weights as the checkpoint stores them (e.g. in a released key layout).
        load: The inverse of ``export``.
    """

    optimisation: Optimisation
    history: History = field(default_factory=History)
    epoch: int = 0
    best: float | None = None
    export: Callable[[nn.Module], dict] = lambda model: unwrap_model(model).state_dict()
    load: Callable[[nn.Module, dict], None] = lambda model, weights: unwrap_model(model).load_state_dict(weights)

    def weights(self) -> dict[str, Any]:
        """The model (and EMA) weights entries of a checkpoint."""
        optimisation = self.optimisation
        entries = {"model": self.export(optimisation.model)}
        if optimisation.ema is not None:
            entries["model_ema"] = self.export(optimisation.ema.module)
        return entries

    def resumable(self) -> dict[str, Any]:
        """The entries last.pt adds to the weights: the optimiser (its moments), the loss scaler and the history.
        The schedule is a function of the config and the update count, and every epoch reseeds torch, so neither
        needs saving."""
        optimisation = self.optimisation
        return {"optimizer": optimisation.optimizer.state_dict(), "scaler": optimisation.scaler.state_dict(),
                "history": self.history.rows}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        """Load a last.pt (read by ``read_checkpoint``) into the model, EMA, optimiser, schedule and scaler."""
        optimisation = self.optimisation
        missing = [key for key in ("optimizer", "scaler") if key not in state]
        if missing:
            raise CheckpointError(f"{path}: cannot resume from it (no {', '.join(missing)}; best.pt is not last.pt)")
        # the optimiser's settings come from the run's (possibly changed) config, its moments from the checkpoint
        settings = [{key: value for key, value in group.items() if key != "params"}
                    for group in optimisation.optimizer.param_groups]
        try:
            self.load(optimisation.model, state["model"])
            if optimisation.ema is not None and "model_ema" in state:
                self.load(optimisation.ema.module, state["model_ema"])
            optimisation.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: its weights do not fit this run's model ({error_summary(error)}); "
                                  f"were the data or the model changed?") from None
        for group, fresh in zip(optimisation.optimizer.param_groups, settings, strict=True):
            group.update(fresh)
        optimisation.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = int(state["epoch"]), state.get("best")
        self.history = History(state.get("history"))
        self.history.truncate(self.epoch)


@dataclass(frozen=True)
class Evaluated:
    """An evaluation during training: the metrics to add to the epoch's row and the score that picks best.pt."""

    metrics: dict[str, float]
    score: float
    shown: Any = None  # what to print (a rich table), if anything


class TrainingLoop:
    """The epoch loop of ``reid train`` and ``reid pretrain``.

    Args:
        runtime: Where the run runs.
        state: The state it trains (restored by ``resume``).
        run: The run directory (last.pt, best.pt, metrics.csv go there).
        kind: The checkpoint kind ("reid" or "pretrain").
        config: The run's config (a pydantic model, stored in every checkpoint).
        seed: The run's seed (each epoch reseeds torch from (seed, epoch)).
        say: Prints a line (and keeps it in the run's log); rank 0 only.
    """

    def __init__(self, runtime: Runtime, state: TrainingState, run: RunDirectory, kind: str, config, seed: int,
                 say: Callable[[Any], None]) -> None:
        self.runtime, self.state, self.run, self.kind = runtime, state, run, kind
        self.config, self.seed, self.say = config, seed, say

    def resume(self, steps_per_epoch: int) -> bool:
        """Restore the state from last.pt when there is one, and set the rate the schedule gives where it stopped;
        returns whether it did."""
        if not self.run.last.is_file():
            return False
        self.state.restore(read_checkpoint(self.run.last, self.kind), self.run.last)
        self.state.optimisation.scheduler.step_update(self.state.epoch * steps_per_epoch)
        return True

    def save(self, path: Path, resumable: bool, **entries: Any) -> None:
        state = self.state
        extra = state.resumable() if resumable else {}
        write_checkpoint(path, self.kind, self.config, state.epoch, state.best, **state.weights(), **extra,
                         **entries)

    def run_epochs(
            self,
            epochs: int,
            train_epoch: Callable[[int], dict[str, float]],
            evaluate: Callable[[int], Evaluated | None],
            after_epoch: Callable[[dict[str, float]], None] | None = None,
            entries: dict[str, Any] | None = None,
    ) -> None:
        """Epochs ``state.epoch`` .. ``epochs - 1``.

        Args:
            train_epoch: Trains one epoch (0-based) and returns its row (losses, lr, rates).
            evaluate: Evaluates after an epoch, or returns None when no evaluation is due.
            after_epoch: Called with the finished row on rank 0 (e.g. to write TensorBoard scalars).
            entries: Extra checkpoint entries (e.g. the number of classes).
        """
        runtime, state = self.runtime, self.state
        started, first = time.perf_counter(), state.epoch
        for epoch in range(state.epoch, epochs):
            torch.manual_seed(epoch_seed(self.seed, epoch))
            row = {"epoch": epoch + 1, **train_epoch(epoch)}
            state.epoch = epoch + 1
            evaluated = evaluate(epoch) if runtime.main else None
            if evaluated is not None:
                row.update(evaluated.metrics)
                if evaluated.shown is not None:
                    self.say(evaluated.shown)
                if state.best is None or evaluated.score > state.best:
                    state.best = evaluated.score
                    self.save(self.run.best, resumable=False, **(entries or {}))
            if runtime.main:
                state.history.add(row)
                self.save(self.run.last, resumable=True, **(entries or {}))
                state.history.write_csv(self.run.metrics)
                if after_epoch is not None:
                    after_epoch(row)
            left = (time.perf_counter() - started) / (epoch + 1 - first) * (epochs - epoch - 1)
            self.say(f"epoch {epoch + 1}/{epochs}: {describe(row)}; run ETA {duration(left)}")
            runtime.barrier()


def describe(row: dict[str, Any]) -> str:
    """The epoch line's body: the total loss, the training rate (of images, or of tracklets for video) with its
    data wait, the compilation's cost, the epoch's time."""
    unit, rate = next((key.removesuffix("_per_second"), value) for key, value in row.items()
                      if key.endswith("_per_second"))
    parts = [f"loss {row['loss_total']:.4f}", f"{rate:.1f} {unit}/s"
             + (f" ({100 * row['data_wait']:.0f}% waiting for data)" if "data_wait" in row else "")]
    if row.get("compile_seconds"):
        parts.append(f"compiled in {row['compile_seconds']:.0f} s")
    parts.append(f"{row['seconds']:.0f} s")
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """12 s, 4m 05s, 2h 03m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class StepClock:
    """Times the steps of an epoch: its rate, the share spent waiting for data, and how much longer the first steps
    took than the typical one (a compilation's cost; CUDA graphs record on the third call, so three steps)."""

    WARMUP = 3

    def __init__(self) -> None:
        self.start = self.asked = self.received = time.perf_counter()
        self.waited = 0.0
        self.steps: list[float] = []
        self.samples = 0

    def got_batch(self) -> None:
        self.received = time.perf_counter()
        self.waited += self.received - self.asked

    def stepped(self, samples: int) -> None:
        self.asked = time.perf_counter()
        self.steps.append(self.asked - self.received)
        self.samples += samples

    @property
    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.start, 1e-9)

    def first_steps_extra(self) -> float:
        """Seconds the first steps took beyond the typical step (0 with too few steps to tell)."""
        if len(self.steps) <= self.WARMUP:
            return 0.0
        typical = statistics.median(self.steps[self.WARMUP:self.WARMUP + 20])
        return max(0.0, sum(self.steps[:self.WARMUP]) - self.WARMUP * typical)

    def row(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.start
        return {"samples_per_second": self.samples / seconds, "seconds": seconds, "data_wait": self.waited / seconds}
