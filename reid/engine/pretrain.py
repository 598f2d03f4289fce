"""ImageNet pretraining of AttNet (or any timm model) with the paper's DeiT-style recipe, from timm's parts, on the
shared runtime (``reid.engine.runtime``: the epoch loop, the step, checkpoints, AMP, DDP, compile).

create_transform with RandAugment (rand-m9-mstd0.5-inc1), colour jitter 0.4, random erasing 0.25 and bicubic
resizing; Mixup 0.8 / CutMix 1.0 with soft-target cross-entropy (label smoothing 0.1); AdamW at lr 4e-3 for a
global batch of 4096 (scaled linearly with the actual global batch), weight decay 0.05 without decay on norms,
biases and ATConv's difference_control; 5 warmup epochs then cosine to 1e-5; the variant's drop-path rate; model
EMA; AMP (bf16 where supported) and channels_last on CUDA; gradient clipping; DDP under torchrun.

The data is an ImageFolder tree (``train/`` and ``val/``, one folder per class). Every epoch ends with top-1 and
top-5 of the raw and the EMA model on ``val/``, a row of metrics.csv and an atomic last.pt; best.pt keeps the
best top-1. Checkpoints store ``model`` and ``model_ema`` in the released AttNet key layout, so they load with
``reid train --pretrained`` and with timm's ``pretrained_cfg_overlay=dict(file=...)`` like the authors' files.
"""
from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from timm.data import Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3, accuracy
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.datasets import ImageFolder

from reid.config import PretrainConfig
from reid.engine.runtime import (
    Evaluated,
    Optimisation,
    RunDirectory,
    Runtime,
    StepClock,
    TrainingLoop,
    TrainingState,
    TrainingStep,
    seed_everything,
)
from reid.errors import ReidError
from reid.models.attnet import AttNet, released_state_dict
from reid.models.backbones import create_backbone
from reid.models.pretrained import filter_of
from reid.models.weights import unwrap_model

REFERENCE_BATCH = 4096  # the global batch the paper's learning rate is given for


def _export(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights in the released key layout for AttNet, as they are for other timm models."""
    model = unwrap_model(model)
    return released_state_dict(model) if isinstance(model, AttNet) else model.state_dict()


def _load(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    model = unwrap_model(model)
    filter_fn = filter_of(model)
    model.load_state_dict(filter_fn(weights, model) if filter_fn is not None else weights)


def _check_folders(root: Path) -> tuple[ImageFolder, ImageFolder]:
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ReidError(f"{root / split}: no such folder (an ImageFolder tree needs train/ and val/)")
    try:
        train, val = ImageFolder(str(root / "train")), ImageFolder(str(root / "val"))
    except (FileNotFoundError, RuntimeError) as error:
        raise ReidError(f"{root}: {error}") from None
    if train.classes != val.classes:
        missing = sorted(set(train.classes) ^ set(val.classes))[:5]
        raise ReidError(f"{root}: train/ and val/ have different classes (e.g. {', '.join(missing)})")
    return train, val


def pretrain(config: PretrainConfig, resume: bool = False, console: Console | None = None,
             overwrite: bool = False) -> dict[str, float]:
    """Run (or continue) ImageNet-style training; returns the last epoch's metrics.

    Args:
        resume: Continue the run in ``config.output_dir`` (see ``RunDirectory.claim`` for what may change).
        overwrite: Replace a run the directory holds.
    """
    run = RunDirectory(Path(config.output_dir))
    runtime = Runtime.start(config.device, config.amp, config.seed, deterministic=False, threads=config.threads)
    say = console.print if console is not None and runtime.main else (lambda message: None)
    try:
        if not runtime.main:
            return _pretrain(config, runtime, run, resume, say)
        with run.claim(config, resume, overwrite) as (config, notes):
            for note in runtime.notes + notes:
                say(f"note: {note}")
            return _pretrain(config, runtime, run, resume, say)
    finally:
        runtime.close()


def _pretrain(config: PretrainConfig, runtime: Runtime, run: RunDirectory, resume: bool, say) -> dict[str, float]:
    seed_everything(config.seed + runtime.rank)  # each rank draws its own augmentations
    root = Path(config.data_root)
    train_set, val_set = _check_folders(root)
    train_set.transform = create_transform(config.input_size, is_training=True, auto_augment=config.auto_augment,
                                           color_jitter=config.color_jitter, re_prob=config.reprob,
                                           re_mode="pixel", interpolation="bicubic")
    val_set.transform = create_transform(config.input_size, crop_pct=config.crop_pct, interpolation="bicubic")
    num_classes = len(train_set.classes)
    if len(train_set) < config.batch_size * runtime.world_size:
        raise ReidError(f"--batch-size {config.batch_size} x {runtime.world_size} processes is larger than the "
                        f"{len(train_set)} training images")
    sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    workers = dict(num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                   pin_memory=runtime.device.type == "cuda")
    loader = DataLoader(train_set, config.batch_size, sampler=sampler, drop_last=True, **workers)
    val_loader = DataLoader(val_set, config.batch_size, shuffle=False, **workers)

    extra = {} if config.drop_path_rate is None else {"drop_path_rate": config.drop_path_rate}
    model = create_backbone(config.model, (config.input_size, config.input_size), num_classes=num_classes,
                            check_size=False, **extra).model.to(runtime.device)
    if config.channels_last and runtime.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    global_batch = config.batch_size * runtime.world_size
    optimizer = create_optimizer_v2(model, "adamw", lr=config.lr * global_batch / REFERENCE_BATCH,
                                    weight_decay=config.weight_decay)
    steps = len(loader)
    optimisation = Optimisation(
        model, optimizer,
        CosineLRScheduler(optimizer, t_initial=config.epochs * steps, lr_min=config.min_lr,
                          warmup_t=config.warmup_epochs * steps, warmup_lr_init=1e-6, warmup_prefix=True,
                          t_in_epochs=False),
        torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16), config.grad_clip,
        ModelEmaV3(model, decay=config.ema_decay) if config.model_ema else None,
        advice=f"continue with a lower rate: reid pretrain --output-dir {config.output_dir} --resume --set "
               f"lr={config.lr / 4:.3g} (or set grad_clip)")
    mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.smoothing,
                  num_classes=num_classes) if config.mixup > 0 or config.cutmix > 0 else None
    criterion = SoftTargetCrossEntropy() if mixup else LabelSmoothingCrossEntropy(config.smoothing)
    loop = TrainingLoop(runtime, TrainingState(optimisation, export=_export, load=_load), run, "pretrain", config,
                        config.seed + runtime.rank, say)
    if resume and loop.resume(steps):
        say(f"resuming {run.root} after epoch {loop.state.epoch}")
    train_model = runtime.prepare(model, config.compile, steps * (config.epochs - loop.state.epoch),
                                  on_fallback=lambda line: say(f"note: {line}"))
    training_step = TrainingStep(train_model, optimisation)
    first_epoch = loop.state.epoch

    def train_epoch(epoch: int) -> dict[str, float]:
        sampler.set_epoch(epoch)
        train_model.train()
        clock, loss_sum = StepClock(), 0.0
        compiled = epoch == first_epoch and training_step.proven == 0
        for step, (images, targets) in enumerate(loader):
            clock.got_batch()
            images, targets = images.to(runtime.device, non_blocking=True), targets.to(runtime.device,
                                                                                       non_blocking=True)
            if config.channels_last and runtime.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                images, targets = mixup(images, targets)

            def losses(model, images=images, targets=targets):
                with runtime.autocast():
                    loss = criterion(model(images), targets)
                return loss, {"cross-entropy": loss}

            loss, _ = training_step(losses, epoch * steps + step + 1, f"epoch {epoch + 1}, step {step + 1}",
                                    run.last)
            loss_sum += loss.item()
            clock.stepped(global_batch)
        timing = clock.row()
        row = {"loss_total": loss_sum / steps, "lr": optimizer.param_groups[0]["lr"],
               "images_per_second": timing.pop("samples_per_second"), **timing}
        if compiled:
            row["compile_seconds"] = clock.first_steps_extra()
        return row

    def evaluate(epoch: int) -> Evaluated:
        metrics = _validate(model, val_loader, runtime)
        if optimisation.ema is not None:
            metrics |= {f"ema_{k}": v for k, v in _validate(optimisation.ema.module, val_loader, runtime).items()}
        say(f"epoch {epoch + 1}: top-1 {metrics['top1']:.2f}, top-5 {metrics['top5']:.2f}"
            + (f", EMA top-1 {metrics['ema_top1']:.2f}" if "ema_top1" in metrics else ""))
        return Evaluated(metrics, max(metrics["top1"], metrics.get("ema_top1", 0.0)))

    loop.run_epochs(config.epochs, train_epoch, evaluate,
                    entries={"num_classes": num_classes, "classes": train_set.classes})
    return loop.state.history.rows[-1] if loop.state.history.rows else {}


@torch.no_grad()
def _validate(model: torch.nn.Module, loader: DataLoader, runtime: Runtime) -> dict[str, float]:
    was_training = model.training
    model.eval()
    top1 = top5 = count = 0.0
    for images, targets in loader:
        images, targets = images.to(runtime.device), targets.to(runtime.device)
        with runtime.autocast():
            logits = model(images)
        k = min(5, logits.shape[1])
        first, fifth = accuracy(logits.float(), targets, topk=(1, k))
        top1, top5, count = top1 + first.item() * len(images), top5 + fifth.item() * len(images), count + len(images)
    model.train(was_training)
    return {"top1": top1 / max(count, 1), "top5": top5 / max(count, 1)}
