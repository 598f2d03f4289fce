"""The optimiser and learning-rate schedule of a training run, from its config.

Parameters are grouped as timm groups them (no weight decay on norms, biases and the names a model lists in
``no_weight_decay``; with ``decay_all_weights``, as AGW does, decay on every parameter), and the backbone's groups
carry ``lr_scale = backbone_lr_scale``, which timm's schedulers apply on every update: AGW trains the backbone at
a tenth of the rate of the BNNeck and classifier. Schedules are counted in optimiser steps, with a warmup from
``warmup_factor x lr`` that rises every step, or every epoch (``warmup_by: epoch``: AGW's lr x (epoch + 1) / 10
when warmup_factor is 1 / warmup_epochs): "cosine" decays to ``min_lr``, "step" multiplies the rate by
``lr_decay`` at each epoch of ``lr_steps`` (AGW's 10 / 20 / 50 schedule).
"""
from __future__ import annotations

import bisect

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.scheduler.scheduler import Scheduler
from torch import nn

from reid.config import TrainConfig

# What trains at the backbone's rate: the network and AGW's non-local blocks inside it (AGW's train.py gives every
# parameter but the BNNeck's and the classifier's the backbone's rate, 0.1 x lr)
BACKBONES = ("backbone.", "infrared_backbone.", "non_local.")


def parameter_groups(model: nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0,
                     decay_all: bool = False) -> list[dict]:
    """The trainable parameters in groups by (learning-rate scale, weight decay), backbone groups first.

    With ``backbone_lr_scale`` 1 these are timm's own two groups (no decay, then decay), in timm's order.

    Args:
        decay_all: Decay every parameter, norms and biases included (AGW), instead of timm's exemptions.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") and not decay_all else set()
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = not decay_all and (parameter.ndim <= 1 or name.endswith(".bias") or name in skip)
        decay = 0.0 if exempt else weight_decay
        scale = backbone_lr_scale if name.startswith(BACKBONES) else 1.0
        groups.setdefault((scale, decay), []).append(parameter)
    order = sorted(groups, key=lambda key: (key[0] != backbone_lr_scale, key[1] > 0))
    return [{"params": groups[key], "lr_scale": key[0], "weight_decay": key[1]} for key in order]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """timm's optimiser of ``config.optimizer`` ("sgd" is SGD with Nesterov momentum, as AGW uses it)."""
    extra = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    groups = parameter_groups(model, config.weight_decay, config.backbone_lr_scale, config.decay_all_weights)
    return create_optimizer_v2(groups, config.optimizer, lr=config.lr, weight_decay=config.weight_decay, **extra)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The current rate before any group's scale (what the config's ``lr`` names), for logs and curves."""
    return max(group["lr"] / group.get("lr_scale", 1.0) for group in optimizer.param_groups)


class StepLRScheduler(Scheduler):
    """Linear warmup over ``warmup_t`` updates from ``warmup_lr_init``, then the base rate multiplied by
    ``decay_rate`` once for every milestone in ``decay_t`` (updates) already reached.

    timm's MultiStepLRScheduler counts milestones from the end of warmup and one update early (its documented
    convention); this one places them where the config says, at the first update of the epoch. With
    ``warmup_steps_per`` (the updates of an epoch), the warmup rises once per epoch instead of every update, from
    ``warmup_lr_init`` in the first epoch to the base rate in the last warmup epoch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, decay_t: list[int], decay_rate: float, warmup_t: int,
                 warmup_lr_init: float, warmup_steps_per: int | None = None) -> None:
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False)
        self.decay_t, self.decay_rate = sorted(decay_t), decay_rate
        self.warmup_t, self.warmup_lr_init = warmup_t, warmup_lr_init
        self.warmup_steps_per = warmup_steps_per
        if warmup_t:
            self.update_groups(self._get_lr(0))

    def _get_lr(self, t: int) -> list[float]:
        if t < self.warmup_t and self.warmup_steps_per:
            epochs = self.warmup_t // self.warmup_steps_per
            epoch = t // self.warmup_steps_per
            fraction = epoch / (epochs - 1) if epochs > 1 else 1.0
            return [self.warmup_lr_init + fraction * (base - self.warmup_lr_init) for base in self.base_values]
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * (base - self.warmup_lr_init) / self.warmup_t for base in self.base_values]
        factor = self.decay_rate ** bisect.bisect_right(self.decay_t, t)
        return [base * factor for base in self.base_values]


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Scheduler:
    """The config's schedule, stepped once per optimiser update (``scheduler.step_update(update)``)."""
    warmup = config.warmup_epochs * steps_per_epoch
    start = config.lr * config.warmup_factor
    if config.lr_schedule == "step":
        return StepLRScheduler(optimizer, [epoch * steps_per_epoch for epoch in config.lr_steps], config.lr_decay,
                               warmup, start, steps_per_epoch if config.warmup_by == "epoch" else None)
    # warmup_prefix: the cosine starts after the warmup, so it spans the remaining updates and ends at min_lr
    return CosineLRScheduler(optimizer, t_initial=max(config.epochs * steps_per_epoch - warmup, 1),
                             lr_min=config.min_lr, warmup_t=warmup, warmup_lr_init=start, warmup_prefix=True,
                             t_in_epochs=False)
