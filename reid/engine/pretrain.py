"""ImageNet pretraining of AttNet (or any timm model) with the paper's DeiT-style recipe, from timm's parts.

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

import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from timm.data import Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3, accuracy
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.datasets import ImageFolder

from reid.config import PretrainConfig
from reid.engine.compile import compile_model
from reid.engine.history import History
from reid.engine.trainer import (
    epoch_seed,
    init_distributed,
    optimizer_step,
    resolve_amp,
    resolve_device,
    seed_everything,
)
from reid.errors import ReidError
from reid.io import atomic_torch_save
from reid.models.attnet import AttNet, released_state_dict, remap_released_keys
from reid.models.backbones import create_backbone
from reid.models.weights import unwrap_model

REFERENCE_BATCH = 4096  # the global batch the paper's learning rate is given for


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights in the released key layout for AttNet, as they are for other timm models."""
    model = unwrap_model(model)
    return released_state_dict(model) if isinstance(model, AttNet) else model.state_dict()


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


def pretrain(config: PretrainConfig, resume: bool = False, console: Console | None = None) -> dict[str, float]:
    """Run (or continue) ImageNet-style training; returns the last epoch's metrics."""
    rank, world_size, local_rank = init_distributed()
    device = resolve_device(config.device, local_rank)
    amp_dtype = resolve_amp(config.amp, device)
    seed_everything(config.seed + rank, deterministic=False)
    root, out = Path(config.data_root), Path(config.output_dir)
    train_set, val_set = _check_folders(root)
    train_set.transform = create_transform(config.input_size, is_training=True, auto_augment=config.auto_augment,
                                           color_jitter=config.color_jitter, re_prob=config.reprob,
                                           re_mode="pixel", interpolation="bicubic")
    val_set.transform = create_transform(config.input_size, crop_pct=config.crop_pct, interpolation="bicubic")
    num_classes = len(train_set.classes)
    if len(train_set) < config.batch_size * world_size:
        raise ReidError(f"--batch-size {config.batch_size} x {world_size} processes is larger than the "
                        f"{len(train_set)} training images")
    sampler = DistributedSampler(train_set, world_size, rank, shuffle=True, seed=config.seed, drop_last=True)
    workers = dict(num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                   pin_memory=device.type == "cuda")
    loader = DataLoader(train_set, config.batch_size, sampler=sampler, drop_last=True, **workers)
    val_loader = DataLoader(val_set, config.batch_size, shuffle=False, **workers)

    extra = {} if config.drop_path_rate is None else {"drop_path_rate": config.drop_path_rate}
    model = create_backbone(config.model, (config.input_size, config.input_size), num_classes=num_classes,
                            check_size=False, **extra).model.to(device)
    if config.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    global_batch = config.batch_size * world_size
    lr = config.lr * global_batch / REFERENCE_BATCH
    optimizer = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=config.weight_decay)
    steps = len(loader)
    scheduler = CosineLRScheduler(optimizer, t_initial=config.epochs * steps, lr_min=config.min_lr,
                                  warmup_t=config.warmup_epochs * steps, warmup_lr_init=1e-6, warmup_prefix=True,
                                  t_in_epochs=False)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = ModelEmaV3(model, decay=config.ema_decay) if config.model_ema else None
    mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.smoothing,
                  num_classes=num_classes) if config.mixup > 0 or config.cutmix > 0 else None
    criterion = SoftTargetCrossEntropy() if mixup else LabelSmoothingCrossEntropy(config.smoothing)

    history, start_epoch, best = History(), 0, 0.0
    last = out / "last.pt"
    if resume and last.is_file():
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(remap_released_keys(checkpoint["model"]) if isinstance(model, AttNet)
                              else checkpoint["model"])
        if ema is not None and "model_ema" in checkpoint:
            ema.module.load_state_dict(remap_released_keys(checkpoint["model_ema"]) if isinstance(model, AttNet)
                                       else checkpoint["model_ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best = checkpoint["epoch"], checkpoint["best_top1"]
        history = History(checkpoint["history"])
        history.truncate(start_epoch)
    train_model = model
    if world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    train_model = compile_model(train_model, config.compile, device)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

    row: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(epoch_seed(config.seed + rank, epoch))
        sampler.set_epoch(epoch)
        train_model.train()
        started, loss_sum = time.perf_counter(), 0.0
        for step, (images, targets) in enumerate(loader):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if config.channels_last and device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                images, targets = mixup(images, targets)
            with autocast:
                loss = criterion(train_model(images), targets)
            if not torch.isfinite(loss):
                raise ReidError(f"epoch {epoch + 1}, step {step + 1}: the loss is {loss.item()}; {last} keeps the "
                                f"last good epoch")
            optimizer_step(loss, model, optimizer, scaler, config.grad_clip)
            scheduler.step_update(epoch * steps + step + 1)
            if ema is not None:
                ema.update(model, step=epoch * steps + step + 1)
            loss_sum += loss.item()
        seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "loss": loss_sum / steps, "lr": optimizer.param_groups[0]["lr"],
               "images_per_second": steps * global_batch / seconds}
        row |= _validate(model, val_loader, device, autocast)
        if ema is not None:
            row |= {f"ema_{k}": v for k, v in _validate(ema.module, val_loader, device, autocast).items()}
        if rank == 0:
            history.add(row)
            top1 = max(row["top1"], row.get("ema_top1", 0.0))
            state = {"model": _state(model), "epoch": epoch + 1, "history": history.rows, "config": config.model_dump(),
                     "num_classes": num_classes, "classes": train_set.classes}
            if ema is not None:
                state["model_ema"] = _state(ema.module)
            if top1 > best:
                best = top1
                atomic_torch_save(state | {"best_top1": best}, out / "best.pt")
            atomic_torch_save(state | {"best_top1": best, "optimizer": optimizer.state_dict(),
                                       "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}, last)
            history.write_csv(out / "metrics.csv")
            if console is not None:
                ema_text = f", EMA top-1 {row['ema_top1']:.2f}" if ema is not None else ""
                console.print(f"epoch {epoch + 1}/{config.epochs}: loss {row['loss']:.4f}, top-1 {row['top1']:.2f}, "
                              f"top-5 {row['top5']:.2f}{ema_text}, {row['images_per_second']:.1f} images/s")
        if world_size > 1:
            dist.barrier()
    return row


@torch.no_grad()
def _validate(model: torch.nn.Module, loader: DataLoader, device: torch.device, autocast) -> dict[str, float]:
    was_training = model.training
    model.eval()
    top1 = top5 = count = 0.0
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        with autocast:
            logits = model(images)
        k = min(5, logits.shape[1])
        first, fifth = accuracy(logits.float(), targets, topk=(1, k))
        top1, top5, count = top1 + first.item() * len(images), top5 + fifth.item() * len(images), count + len(images)
    model.train(was_training)
    return {"top1": top1 / max(count, 1), "top5": top5 / max(count, 1)}
