"""Experiment configuration: one flat YAML file per experiment, validated into a typed model.

``TrainConfig`` describes a re-ID training run (``reid train``, ``reid compare``), ``PretrainConfig`` an ImageNet
run (``reid pretrain``). Unknown keys, wrong types and missing paths are refused before any work starts, with the
key named. The command line overrides single fields (``reid train --config X --epochs 5``).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reid.data.registry import DatasetLiteral
from reid.data.transforms import AugmentConfig
from reid.engine.compile import CompileMode
from reid.errors import ReidError


class ConfigError(ReidError):
    """A config file or override is not valid."""


Config = TypeVar("Config", bound="FlatConfig")


class FlatConfig(BaseModel):
    """A flat, typed config that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


class TrainConfig(FlatConfig):
    """Every setting of a training run (see configs/ for documented examples)."""

    # data
    dataset: DatasetLiteral
    data_root: str
    output_dir: str = "runs/experiment"
    trial: int = Field(0, ge=0, description="RegDB split (0..9) to train and test on")
    sysu_mode: Literal["all", "indoor"] = "all"
    seq_len: int = Field(6, ge=1, description="frames per tracklet (VCM-HITSZ)")
    # model
    backbone: str = "attnet_t1"
    pretrained: str | None = None
    input_height: int = Field(288, ge=16)
    input_width: int = Field(144, ge=16)
    pooling: Literal["avg", "gem"] = "avg"
    modality_stems: bool = False
    drop_path_rate: float | None = Field(None, ge=0, lt=1)
    # optimisation
    epochs: int = Field(60, ge=1)
    batch_identities: int = Field(8, ge=2, description="P: identities per batch")
    batch_instances: int = Field(4, ge=1, description="K: samples per identity and modality")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3.5e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: int = Field(5, ge=0)
    min_lr: float = Field(1e-6, ge=0)
    warmup_factor: float = Field(0.01, gt=0, le=1, description="lr at the first step, as a fraction of lr")
    lr_schedule: Literal["cosine", "step"] = "cosine"
    lr_steps: list[int] = Field([20, 50], description="'step' schedule: epochs where lr is multiplied by lr_decay")
    lr_decay: float = Field(0.1, gt=0, le=1)
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="the backbone's lr as a fraction of lr (AGW: 0.1)")
    grad_clip: float | None = Field(5.0, gt=0)
    # losses
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    triplet: Literal["batch_hard", "weighted"] = "batch_hard"
    triplet_margin: float = Field(0.3, ge=0)
    triplet_normalize: bool = Field(True, description="triplet distances between L2-normalised features (AGW: raw)")
    triplet_features: Literal["pooled", "bnneck"] = Field(
        "bnneck", description="what the triplets compare: the features after the BNNeck (retrieval's) or before it")
    id_weight: float = Field(1.0, ge=0)
    triplet_cross_weight: float = Field(1.0, ge=0)
    triplet_batch_weight: float = Field(1.0, ge=0)
    # augmentation
    augment_pad: int = Field(10, ge=0)
    augment_flip: float = Field(0.5, ge=0, le=1)
    augment_erasing: float = Field(0.5, ge=0, le=1)
    augment_channel: float = Field(0.5, ge=0, le=1, description="CAJ channel augmentation of visible images")
    # evaluation
    eval_every: int = Field(10, ge=1, description="evaluate every N epochs (and after the last)")
    eval_trials: int = Field(1, ge=1, description="gallery trials per evaluation during training")
    eval_batch_size: int = Field(64, ge=1)
    metric: Literal["cosine", "euclidean"] = "cosine"
    # runtime
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: CompileMode = Field("auto", description="torch.compile: auto = CUDA graphs on CUDA, off on a CPU")
    deterministic: bool = False
    seed: int = 0
    num_workers: int | None = Field(None, ge=0)
    tensorboard: bool = Field(False, description="also write TensorBoard scalars to output_dir/tensorboard")

    @field_validator("lr_steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if any(step < 1 for step in steps) or steps != sorted(set(steps)):
            raise ValueError("must be increasing epochs of at least 1")
        return steps

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def augment(self) -> AugmentConfig:
        return AugmentConfig(height=self.input_height, width=self.input_width, pad=self.augment_pad,
                             flip=self.augment_flip, erasing=self.augment_erasing,
                             channel_augment=self.augment_channel)

    def loss_weights(self) -> dict[str, float]:
        return {"id": self.id_weight, "triplet_cross": self.triplet_cross_weight,
                "triplet_batch": self.triplet_batch_weight}

    def with_batch_size(self, batch_size: int) -> TrainConfig:
        """A copy with ``batch_identities`` set so a batch holds ``batch_size`` images (2 modalities x identities x
        batch_instances)."""
        per_identity = 2 * self.batch_instances
        if batch_size % per_identity or batch_size // per_identity < 2:
            raise ConfigError(f"--batch-size must be a multiple of 2 x batch_instances = {per_identity} "
                              f"covering at least 2 identities, got {batch_size}")
        return self.model_copy(update={"batch_identities": batch_size // per_identity})

    def check_paths(self) -> None:
        """Refuse missing input paths before a run starts."""
        if not Path(self.data_root).is_dir():
            raise ConfigError(f"data_root: no such directory {self.data_root}")
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            raise ConfigError(f"pretrained: no such file {self.pretrained}")


class PretrainConfig(FlatConfig):
    """Every setting of an ImageNet run; the defaults are the paper's DeiT-style recipe."""

    data_root: str = Field(description="ImageFolder tree with train/ and val/ (one folder per class)")
    model: str = "attnet_t2"
    output_dir: str = "runs/pretrain"
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(128, ge=2, description="images per process")
    lr: float = Field(4e-3, gt=0, description="for a global batch of 4096; scaled linearly")
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(5, ge=0)
    min_lr: float = Field(1e-5, ge=0)
    drop_path_rate: float | None = Field(None, ge=0, lt=1, description="None: the variant's own rate")
    input_size: int = Field(224, ge=16)
    crop_pct: float = Field(0.875, gt=0, le=1)
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = Field(0.4, ge=0)
    reprob: float = Field(0.25, ge=0, le=1)
    mixup: float = Field(0.8, ge=0)
    cutmix: float = Field(1.0, ge=0)
    smoothing: float = Field(0.1, ge=0, lt=1)
    model_ema: bool = True
    ema_decay: float = Field(0.9999, gt=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: CompileMode = Field("auto", description="torch.compile: auto = CUDA graphs on CUDA, off on a CPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(8, ge=0)
    seed: int = 0


def _describe(error: ValidationError, source: str, kind: type[FlatConfig]) -> str:
    messages = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(file)"
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, kind.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            messages.append(f"unknown key {key!r}{hint}")
        elif item["type"] == "missing":
            messages.append(f"missing required key {key!r}")
        else:
            messages.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return f"{source}: " + "; ".join(messages)


def make_config(values: dict[str, Any], source: str = "config", kind: type[Config] = TrainConfig) -> Config:
    """Validate ``values`` into a ``kind`` config; every problem is named in one ConfigError."""
    try:
        return kind(**values)
    except ValidationError as error:
        raise ConfigError(_describe(error, source, kind)) from None


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def resolve_config(path: str | Path) -> Path:
    """A config path as given, or, when it does not exist from here, the shipped config of that name
    (``configs/demo.yaml`` works from any directory)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / path.name
    if not path.is_absolute() and (len(path.parts) == 1 or path.parts[0] == "configs") and shipped.is_file():
        return shipped
    raise ConfigError(f"{path}: no such config file (shipped configs: "
                      f"{', '.join(sorted(p.name for p in SHIPPED_CONFIGS.glob('*.yaml')))})")


def parse_assignments(assignments: list[str] | None) -> dict[str, Any]:
    """``["batch_identities=5", "pretrained=null"]`` -> {"batch_identities": 5, "pretrained": None}: each value
    is read as YAML, as it would be in a config file."""
    values: dict[str, Any] = {}
    for assignment in assignments or []:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
        try:
            values[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key.strip()}: cannot read the value {text!r}") from None
    return values


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a flat YAML file (a shipped config by name, see ``resolve_config``)."""
    path = resolve_config(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values, got {type(values).__name__}")
    return values


def load_config(path: str | Path | None, kind: type[Config] = TrainConfig, assignments: list[str] | None = None,
                **overrides: Any) -> Config:
    """Read a flat YAML config (None: the defaults of ``kind``), apply ``--set KEY=VALUE`` assignments, then the
    non-None ``overrides`` (named command-line options); all are validated like the file."""
    values = read_yaml(path) if path is not None else {}
    values.update(parse_assignments(assignments))
    values.update({key: value for key, value in overrides.items() if value is not None})
    source = str(path) if path is not None else "command line"
    return make_config(values, f"{source} with --set" if assignments else source, kind)
