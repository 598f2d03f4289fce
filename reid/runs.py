"""Run directories: their files and their rules, without torch (so the command line refuses a run before it loads
torch).

A run directory holds config.yaml (the resolved config a resume continues with), train.log, metrics.csv,
curves.png, last.pt and best.pt. Its rules: one training at a time (a lock that names the holder), and a directory
that holds a run is not trained over unless the run is resumed (with settings a resume may change) or overwritten.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from reid.config import FlatConfig, TrainConfig, load_config
from reid.errors import ReidError, problems_of
from reid.io import atomic_write_text, directory, ensure_writable, exclusive_lock, regular_file


@dataclass(frozen=True)
class RunDirectory:
    """The files of a run directory, and its rules."""

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

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def holds_a_run(self) -> list[str]:
        """The names of the run files already here (a directory that holds any is not trained over)."""
        return [p.name for p in (self.last, self.best, self.metrics) if regular_file(p)]

    def refusal(self, config: FlatConfig, resume: bool, overwrite: bool) -> str | None:
        """Why a training with ``config`` may not start here, or None: the directory holds a run that is neither
        resumed nor overwritten, a resume would change what defines the run (``FlatConfig.resumed_with``), or a
        config.yaml that is not a run's (a user's own file, which a run would replace)."""
        if os.path.lexists(self.root) and not directory(self.root):
            return f"{self.root}: is a file, not a run directory"
        if os.path.lexists(self.config) and not self._run_config(type(config)):
            return (f"{self.config}: is not the config of a run, and a run writes its own config.yaml there; train "
                    f"into another --output-dir")
        existing = self.holds_a_run()
        if existing and not resume and not overwrite:
            return (f"{self.root} already holds a run ({', '.join(existing)}); continue it with --resume, train "
                    f"into a new --output-dir, or replace it with --overwrite")
        if resume and regular_file(self.last) and regular_file(self.config):
            try:
                load_config(self.config, type(config)).resumed_with(config)
            except ReidError as error:
                return str(error)
        return None

    def _run_config(self, kind: type[FlatConfig]) -> bool:
        try:
            load_config(self.config, kind)
        except ReidError:
            return False
        return True

    @contextmanager
    def claim(self, config: FlatConfig, resume: bool, overwrite: bool) -> Iterator[tuple[FlatConfig, list[str]]]:
        """Hold the directory for a training (a second one refuses, naming this process) and yield the config to
        train with, and notes on what a resumed run changes.

        A directory that holds a run is refused unless ``resume`` (then ``config`` must be a continuation of the
        run's own config.yaml, see ``FlatConfig.resumed_with``) or ``overwrite`` (then the old run's files go).
        A refusal leaves nothing behind that the claim made.
        """
        made = not self.root.exists()
        ensure_writable(self.config)  # makes the directory, where the lock goes
        lock_files = [self.lock, self.lock.with_name(self.lock.name + ".owner")]
        had_lock = regular_file(self.lock)
        refused = False
        try:
            with exclusive_lock(self.lock, f"the run directory {self.root}", timeout=0):
                notes: list[str] = []
                reason = self.refusal(config, resume, overwrite)
                if reason is not None:
                    refused = True
                    raise ReidError(reason)
                if self.holds_a_run() and not resume:
                    for path in (self.last, self.best, self.metrics, self.curves, self.log):
                        path.unlink(missing_ok=True)
                if resume and regular_file(self.last) and regular_file(self.config):
                    config, changes = load_config(self.config, type(config)).resumed_with(config)
                    notes += [f"resuming with a changed setting: {change}" for change in changes]
                atomic_write_text(self.config, config.to_yaml())
                yield config, notes
        finally:
            if refused:
                if not had_lock:
                    for path in lock_files:
                        path.unlink(missing_ok=True)
                if made:
                    with suppress(OSError):  # only if the claim made it and it is still empty
                        self.root.rmdir()


def recipe_for(config: TrainConfig, backbone: str, run: Path) -> TrainConfig:
    """The config ``backbone`` trains with in a comparison: the comparison's, or the file its ``recipes`` entry
    names (e.g. AGW's own ResNet-50 recipe beside AttNet's), on the comparison's data, run directory and machine."""
    shared = {"backbone": backbone, "output_dir": str(run)}
    if backbone not in config.recipes:
        return config.model_copy(update=shared)
    own = load_config(config.recipes[backbone])
    if (own.dataset, own.trial, own.sysu_mode) != (config.dataset, config.trial, config.sysu_mode):
        raise ReidError(f"recipes: {config.recipes[backbone]} trains on {own.dataset}, the comparison on "
                        f"{config.dataset}; a comparison shares its data")
    machine = {key: getattr(config, key) for key in ("data_root", "device", "compile", "num_workers", "threads",
                                                     "deterministic", "tensorboard")}
    return own.model_copy(update=machine | shared)


def find_checkpoint(folder: Path, backbone: str) -> Path:
    """A checkpoint of ``backbone`` for a comparison: DIR/<backbone>/best.pt, DIR/<backbone>.pt or .../last.pt."""
    for candidate in (folder / backbone / "best.pt", folder / f"{backbone}.pt", folder / backbone / "last.pt"):
        if regular_file(candidate):
            return candidate
    raise ReidError(f"no checkpoint for {backbone} in {folder} (looked for {backbone}/best.pt and {backbone}.pt)")


def comparison_problems(backbones: Sequence[str], config: TrainConfig,
                        checkpoints: str | Path | None = None) -> list[str]:
    """Everything that would stop a comparison half-way, found before any work: no name, a repeated name, a name
    timm does not know, a backbone without a checkpoint (with checkpoints), a recipe file that is not valid."""
    from reid.catalogue import check_backbone

    if not backbones:
        return ["--backbones needs at least one backbone"]
    repeated = sorted({name for name in backbones if list(backbones).count(name) > 1})
    problems = [f"--backbones names {', '.join(repeated)} more than once"] if repeated else []
    problems += problems_of(*(lambda name=name: check_backbone(name) for name in dict.fromkeys(backbones)))
    if checkpoints is not None:
        problems += problems_of(*(lambda name=name: find_checkpoint(Path(checkpoints), name) for name in backbones))
    problems += problems_of(*(lambda name=name: recipe_for(config, name, Path(".")) for name in config.recipes))
    return problems


def demo_problems(config: TrainConfig) -> list[str]:
    """What would stop ``reid demo`` or make it replace a user's files, told before torch loads: its dataset folder
    must be new, empty or an LLCM-layout dataset it wrote; its run directory new, empty, or a run of the demo."""
    from reid.catalogue import check_backbone
    from reid.data.registry import replace_problems as dataset_problems
    from reid.data.registry import synthetic_layout

    problems = problems_of(lambda: check_backbone(config.backbone))
    layout = synthetic_layout(config.data_root)
    if layout not in (None, "llcm"):
        problems.append(f"--data-dir {config.data_root}: holds a synthetic {layout} dataset; the demo needs LLCM's "
                        f"layout (give another --data-dir)")
    elif layout is None:
        problems += [problem.replace("pass --overwrite to replace it", "give another --data-dir")
                     for problem in dataset_problems(config.data_root, False, "--data-dir")]
    run = RunDirectory(Path(config.output_dir))
    previous = run.root.with_name(run.root.name + ".previous")
    if demo_run(run, config) and regular_file(run.root / "metrics.json") and os.path.lexists(previous) \
            and not demo_run(RunDirectory(previous), config):
        problems.append(f"{previous}: holds something that is not a run of this demo, and the demo keeps its "
                        f"previous run there; move it")
    elif not demo_run(run, config) and (refusal := run.refusal(config, False, False)) is not None:
        problems.append(refusal)
    return problems


def demo_run(run: RunDirectory, config: TrainConfig) -> bool:
    """Whether ``run`` holds an earlier run of this demo (same dataset, data and backbone)."""
    try:
        previous = load_config(run.config)
    except ReidError:
        return False
    return (previous.dataset, previous.data_root, previous.backbone) == (config.dataset, config.data_root,
                                                                        config.backbone)
