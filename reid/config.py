"""Experiment configuration: one flat YAML file per experiment, validated into a typed model.

``TrainConfig`` describes a re-ID training run (``reid train``, ``reid compare``), ``PretrainConfig`` an ImageNet
run (``reid pretrain``). Unknown keys, wrong types and missing paths are refused before any work starts, with the
key named. The command line overrides single fields (``reid train --config X --epochs 5``).
"""
from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reid.data.registry import DATASETS
from reid.errors import ReidError, refuse
from reid.io import directory, regular_file
from reid.metric_losses import METRIC_LOSSES
from reid.settings import AmpMode, AugmentConfig, CompileMode, DeviceName, ResizeMethod


def _registered_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset; choose from {', '.join(DATASETS)}")
    return name


DatasetName = Annotated[str, AfterValidator(_registered_dataset)]  # a TrainConfig's, and its checkpoint's ModelConfig


class ConfigError(ReidError):
    """A config file or override is not valid."""


Config = TypeVar("Config", bound="FlatConfig")


class FlatConfig(BaseModel):
    """A flat, typed config that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # Keys a resumed run may change: where and how it runs, and the optimiser's settings (the schedule is a
    # function of the config, so a new lr, decay or epoch count applies from the next step). The others define the
    # run's trajectory (data, model, losses, sampler, augmentation, seed): changing them is a new run.
    RESUME_CHANGES: ClassVar[frozenset[str]] = frozenset()
    # Keys that were renamed: configs, run directories and checkpoints written with the old name still load.
    RENAMED: ClassVar[dict[str, str]] = {}

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info) -> Any:
        """A number is never a bool (``epochs: true`` is not 1), and an integer fits in 64 bits."""
        kinds = _scalar_types(cls.model_fields[info.field_name].annotation)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool) and bool not in kinds and kinds & {int, float}:
                raise ValueError("must be a number, not true or false")
            if isinstance(item, int) and not isinstance(item, bool) and not -2 ** 63 <= item < 2 ** 63:
                raise ValueError("must fit in 64 bits")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)

    def resumed_with(self: Config, other: Config) -> tuple[Config, list[str]]:
        """``other`` as the continuation of this (saved) run, with one note per changed key; a ConfigError names
        every changed key a resumed run cannot take."""
        changed = {key: (getattr(self, key), getattr(other, key)) for key in type(self).model_fields
                   if getattr(self, key) != getattr(other, key)}
        refused = sorted(set(changed) - self.RESUME_CHANGES)
        if refused:
            differences = ", ".join(f"{key} ({changed[key][0]!r} -> {changed[key][1]!r})" for key in refused)
            raise ConfigError(f"--resume continues the run as it was configured; these settings cannot change: "
                              f"{differences}. Train a new run (another --output-dir, or --overwrite)")
        return other, [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items()]


class TrainConfig(FlatConfig):
    """Every setting of a training run (see configs/ for documented examples)."""

    RENAMED = {"triplet": "metric_loss"}
    RESUME_CHANGES = frozenset({
        "data_root", "output_dir", "device", "amp", "channels_last", "compile", "deterministic", "num_workers",
        "threads", "tensorboard", "eval_every", "eval_first", "eval_trials", "eval_batch_size",  # where and how
        "recipes",
        "epochs", "lr", "min_lr", "weight_decay", "momentum", "grad_clip", "lr_steps", "lr_decay",  # the optimiser
    })

    # data
    dataset: DatasetName = Field(description="a registered dataset: llcm, vcm, sysu, regdb, folder (or a plug-in's)")
    data_root: str = Field(description="the dataset's root, as its authors distribute it")
    output_dir: str = Field("runs/experiment", description="the run directory (checkpoints, log, metrics, curves)")
    trial: int = Field(0, ge=0, description="RegDB split (0..9) to train and test on")
    sysu_mode: Literal["all", "indoor"] = Field("all", description="SYSU-MM01 search mode of the evaluations")
    seq_len: int = Field(6, ge=1, description="frames per tracklet (VCM-HITSZ)")
    # model
    backbone: str = Field("attnet_t1", description="any timm model name (AttNet: attnet_xxs .. attnet_t4)")
    pretrained: str | None = Field(None, description="ImageNet weights file for the backbone (none: random init)")
    input_height: int = Field(288, ge=16, description="input height in pixels")
    input_width: int = Field(144, ge=16, description="input width in pixels")
    input_resize: ResizeMethod = Field("bilinear", description="bilinear (OpenCV) or lanczos (PIL's antialiasing "
                                                               "filter, as AGW resizes)")
    pooling: Literal["avg", "gem"] = Field("avg", description="global pooling: average or GeM")
    gem_trainable: bool = Field(True, description="GeM's exponent is learnt (AGW: fixed at 3)")
    modality_stems: bool = Field(False, description="separate visible and infrared stems (AGW's two streams)")
    last_stride: Literal[1, 2] | None = Field(None, description="the last stage's stride, ResNet family only (AGW: 1)")
    bnneck_init_std: float = Field(0.0, ge=0, description="the BNNeck's BN weight starts at N(1, std) (AGW: 0.01)")
    non_local: list[int] = Field([], description="non-local blocks after the last blocks of ResNet stages 1-4, "
                                                 "one count per stage (AGW: [0, 2, 3, 0]; empty: none)")
    non_local_channels: Literal["one", "half"] = Field(
        "one", description="a non-local block's inner width: one channel, as AGW's model.py (and LLCM's copy) "
                           "computes it (reduc_ratio // reduc_ratio), or half its channels (the non-local paper)")
    drop_path_rate: float | None = Field(None, ge=0, lt=1, description="stochastic depth (none: the backbone's own)")
    # optimisation
    epochs: int = Field(60, ge=1, description="training epochs")
    batch_identities: int = Field(8, ge=2, description="P: identities per batch")
    batch_instances: int = Field(4, ge=1, description="K: samples per identity and modality")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="adamw, or sgd with momentum and Nesterov")
    lr: float = Field(3.5e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.05, ge=0, description="weight decay (not on norms and biases, unless "
                                                        "decay_all_weights)")
    decay_all_weights: bool = Field(False, description="weight decay on every parameter, norms and biases too (AGW)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd's momentum")
    warmup_epochs: int = Field(5, ge=0, description="epochs of linear warmup to lr")
    warmup_by: Literal["step", "epoch"] = Field(
        "step", description="the warmup rises every step, or every epoch (AGW: lr x (epoch + 1) / warmup_epochs)")
    min_lr: float = Field(1e-6, ge=0, description="the cosine schedule's final rate")
    warmup_factor: float = Field(0.01, gt=0, le=1, description="lr at the first step, as a fraction of lr")
    lr_schedule: Literal["cosine", "step"] = Field("cosine", description="cosine decay, or steps at lr_steps")
    lr_steps: list[int] = Field([20, 50], description="'step' schedule: epochs where lr is multiplied by lr_decay")
    lr_decay: float = Field(0.1, gt=0, le=1, description="'step' schedule: the factor at each step")
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="the backbone's lr as a fraction of lr (AGW: 0.1)")
    grad_clip: float | None = Field(5.0, gt=0, description="clip the gradients' global norm (none: no clipping)")
    # losses
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="the identity loss's label smoothing")
    metric_loss: Literal[tuple(METRIC_LOSSES)] = Field(
        "batch_hard", description="the metric loss (reid.metric_losses): batch_hard triplets, AGW's weighted "
                                  "regularisation triplet, circle, contrastive, multi_similarity")
    triplet_margin: float = Field(0.3, ge=0, description="the batch-hard triplet's margin")
    triplet_normalize: bool = Field(True, description="triplet distances between L2-normalised features (AGW: raw)")
    triplet_features: Literal["pooled", "bnneck"] = Field(
        "bnneck", description="what the triplets compare: the features after the BNNeck (retrieval's) or before it")
    id_weight: float = Field(1.0, ge=0, description="weight of the identity loss")
    triplet_cross_weight: float = Field(1.0, ge=0, description="weight of the cross-modality triplet")
    triplet_batch_weight: float = Field(1.0, ge=0, description="weight of the triplet over the whole batch")
    # augmentation
    augment_pad: int = Field(10, ge=0, description="pad by this many pixels, then random-crop back")
    augment_flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    augment_erasing: float = Field(0.5, ge=0, le=1, description="probability of random erasing")
    augment_channel: float = Field(0.5, ge=0, le=1, description="CAJ channel augmentation of visible images")
    # evaluation
    eval_every: int = Field(10, ge=1, description="evaluate every N epochs (and after the last)")
    eval_first: int | None = Field(None, ge=1, description="the first epoch evaluated (default: eval_every; AGW: 3)")
    best_metric: Literal["mAP", "rank1"] = Field("mAP", description="what best.pt keeps the best of (AGW: rank1)")
    best_direction: Literal["ir2vis", "vis2ir"] | None = Field(
        None, description="the search best.pt is chosen on (none: the dataset's first; LLCM's AGW baseline: vis2ir)")
    eval_trials: int = Field(1, ge=1, description="gallery trials per evaluation during training")
    val_identities: int = Field(0, ge=0, description="hold out this many training identities as a validation set "
                                                     "and choose best.pt on it (0: on the test set, as the papers "
                                                     "do)")
    eval_batch_size: int = Field(64, ge=1, description="samples per forward pass when evaluating")
    metric: Literal["cosine", "euclidean"] = Field("cosine", description="the evaluations' distance")
    # runtime
    device: DeviceName = Field("auto", description="auto (CUDA when there is a GPU), cpu or cuda")
    amp: AmpMode = Field("auto", description="mixed precision: auto = bf16 on CUDA, float32 on a CPU")
    channels_last: bool = Field(True, description="channels-last memory format on CUDA (and under DDP)")
    compile: CompileMode = Field("auto", description="torch.compile: auto compiles on CUDA for runs of 3,000 steps "
                                                     "or more, where it pays; off on a CPU")
    deterministic: bool = Field(False, description="deterministic algorithms only (slower)")
    seed: int = Field(0, description="seeds the weights, the sampler and the augmentations")
    num_workers: int | None = Field(None, ge=0, description="data loading workers (none: by the CPU count)")
    threads: int | None = Field(None, ge=1, description="CPU threads of torch's operations (none: the usable "
                                                        "cores less the loading workers; 1 on a busy machine)")
    tensorboard: bool = Field(False, description="also write TensorBoard scalars to output_dir/tensorboard")
    recipes: dict[str, str] = Field(default_factory=dict, description="reid compare: a backbone named here trains "
                                                                       "with that config file's recipe")

    @field_validator("non_local")
    @classmethod
    def _four_stages(cls, counts: list[int]) -> list[int]:
        if counts and (len(counts) != 4 or any(count < 0 for count in counts)):
            raise ValueError("give one count per ResNet stage, e.g. [0, 2, 3, 0] (or none: [])")
        return counts

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.warmup_by == "epoch" and self.lr_schedule != "step":
            raise ValueError("warmup_by: epoch goes with lr_schedule: step (AGW's schedule)")
        directions = DATASETS[self.dataset].directions if self.dataset in DATASETS else ()
        if self.best_direction is not None and directions and self.best_direction not in directions:
            raise ValueError(f"best_direction: {self.dataset} is searched {' and '.join(directions)} only, not "
                             f"{self.best_direction}")
        return self

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the run evaluates after ``epoch`` (1-based): every eval_every epochs from eval_first on, and
        after the last."""
        first = self.eval_first or self.eval_every
        return epoch == self.epochs or (epoch >= first and (epoch - first) % self.eval_every == 0)

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
                             channel_augment=self.augment_channel, resize=self.input_resize)

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

    def path_problems(self) -> list[str]:
        """The input paths that are missing (checked before a run starts)."""
        problems = []
        if not directory(self.data_root):
            problems.append(f"data_root: no such directory {self.data_root}")
        if self.pretrained is not None and not regular_file(self.pretrained):
            problems.append(f"pretrained: no such file {self.pretrained}")
        return problems

    def check_paths(self) -> None:
        """Refuse missing input paths before a run starts, all of them at once."""
        refuse(self.path_problems(), ConfigError)


class PretrainConfig(FlatConfig):
    """Every setting of an ImageNet run; the defaults are the paper's DeiT-style recipe."""

    RESUME_CHANGES = frozenset({"data_root", "output_dir", "device", "amp", "channels_last", "compile",
                                "num_workers", "threads", "epochs", "lr", "min_lr", "weight_decay", "grad_clip"})

    data_root: str = Field(description="ImageFolder tree with train/ and val/ (one folder per class)")
    model: str = Field("attnet_t2", description="the AttNet variant (or any timm model) to pretrain")
    output_dir: str = Field("runs/pretrain", description="the run directory")
    epochs: int = Field(300, ge=1, description="training epochs")
    batch_size: int = Field(128, ge=2, description="images per process")
    lr: float = Field(4e-3, gt=0, description="for a global batch of 4096; scaled linearly")
    weight_decay: float = Field(0.05, ge=0, description="AdamW's weight decay")
    warmup_epochs: int = Field(5, ge=0, description="epochs of linear warmup")
    min_lr: float = Field(1e-5, ge=0, description="the cosine schedule's final rate")
    drop_path_rate: float | None = Field(None, ge=0, lt=1, description="None: the variant's own rate")
    input_size: int = Field(224, ge=16, description="training crop size")
    crop_pct: float = Field(0.875, gt=0, le=1, description="evaluation: centre crop as a fraction of the resize")
    auto_augment: str = Field("rand-m9-mstd0.5-inc1", description="timm's RandAugment policy")
    color_jitter: float = Field(0.4, ge=0, description="colour jitter strength")
    reprob: float = Field(0.25, ge=0, le=1, description="probability of random erasing")
    mixup: float = Field(0.8, ge=0, description="mixup alpha")
    cutmix: float = Field(1.0, ge=0, description="cutmix alpha")
    smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing")
    model_ema: bool = Field(True, description="keep an exponential moving average of the weights")
    ema_decay: float = Field(0.9999, gt=0, lt=1, description="the EMA's decay per step")
    grad_clip: float | None = Field(5.0, gt=0, description="clip the gradients' global norm (none: no clipping)")
    amp: AmpMode = Field("auto", description="mixed precision: auto = bf16 on CUDA, float32 on a CPU")
    channels_last: bool = Field(True, description="channels-last memory format on CUDA")
    compile: CompileMode = Field("auto", description="torch.compile: auto compiles on CUDA for runs of 3,000 steps "
                                                     "or more, where it pays; off on a CPU")
    device: DeviceName = Field("auto", description="auto (CUDA when there is a GPU), cpu or cuda")
    num_workers: int = Field(8, ge=0, description="data loading workers per process")
    threads: int | None = Field(None, ge=1, description="CPU threads of torch's operations (none: the usable "
                                                        "cores less the loading workers; 1 on a busy machine)")
    seed: int = Field(0, description="random seed")


def _scalar_types(annotation: Any) -> set[type]:
    """The plain types a field's values may have: int, float, bool, str (through unions, lists and Literals)."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return {type(value) for value in arguments}
    if origin in (typing.Union, types.UnionType, list):
        return set().union(*(_scalar_types(argument) for argument in arguments))
    return {annotation} if isinstance(annotation, type) else set()


MODEL_KEYS = ("dataset", "seq_len", "backbone", "input_height", "input_width", "input_resize", "pooling",
              "gem_trainable", "modality_stems", "last_stride", "bnneck_init_std", "drop_path_rate", "non_local",
              "non_local_channels")


class ModelConfig(BaseModel):
    """What a trained model is, apart from how it was trained: what a checkpoint needs to rebuild it and embed with
    it (the backbone and its options, the input, the frames of a tracklet, the dataset it was trained on). A
    checkpoint keeps it beside the training config, with its version, so that renaming a training setting never
    makes a checkpoint unloadable, and a change to this config comes with a migration (``MODEL_MIGRATIONS``).

    Unknown keys are refused: a model config is only ever written by this project, at a known version."""

    model_config = ConfigDict(extra="forbid")
    VERSION: ClassVar[int] = 1

    num_classes: int = Field(ge=0)
    dataset: DatasetName
    seq_len: int = Field(6, ge=1)
    backbone: str
    input_height: int = Field(ge=16)
    input_width: int = Field(ge=16)
    input_resize: ResizeMethod = "bilinear"
    pooling: Literal["avg", "gem"] = "avg"
    gem_trainable: bool = True
    modality_stems: bool = False
    last_stride: Literal[1, 2] | None = None
    bnneck_init_std: float = Field(0.0, ge=0)
    drop_path_rate: float | None = None
    non_local: list[int] = []
    non_local_channels: Literal["one", "half"] = "one"

    @classmethod
    def of(cls, config: TrainConfig, num_classes: int) -> ModelConfig:
        return cls(num_classes=num_classes, **{key: getattr(config, key) for key in MODEL_KEYS})

    @classmethod
    def from_training(cls, values: dict[str, Any], num_classes: int) -> ModelConfig:
        """The model config of a checkpoint that kept only its training config (formats 1 and 2): that config's
        model keys, under their names of today (``TrainConfig.RENAMED``), the other keys ignored."""
        values = renamed(values, TrainConfig)
        return cls(num_classes=num_classes, **{key: values[key] for key in MODEL_KEYS if key in values})

    @classmethod
    def migrated(cls, values: dict[str, Any], version: int) -> ModelConfig:
        """A model config written at ``version``, brought to today's through ``MODEL_MIGRATIONS``."""
        if not 1 <= version <= cls.VERSION:
            raise ConfigError(f"model config version {version}; this version of reid reads 1 to {cls.VERSION}")
        for step in range(version, cls.VERSION):
            values = MODEL_MIGRATIONS[step](dict(values))
        return cls(**values)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def augment(self) -> AugmentConfig:
        """The input settings the model was trained at (what its evaluation transform needs)."""
        return AugmentConfig(height=self.input_height, width=self.input_width, resize=self.input_resize)


# version n -> n + 1: each takes a model config dict of version n and returns one of version n + 1 (none yet: a
# change to ModelConfig raises its VERSION and adds the step here, with a test from a checkpoint of version n)
MODEL_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def config_reference(kind: type[FlatConfig]) -> str:
    """Every key of a config model as a markdown table (key, type, default, meaning, whether a resume may change
    it), generated from the model itself: the README's reference is this text, checked by a test."""
    rows = ["| key | type | default | meaning | resume may change |", "|---|---|---|---|---|"]
    for key, field in kind.model_fields.items():
        kind_name = _type_name(field.annotation)
        default = "required" if field.is_required() else yaml.safe_dump(field.get_default(call_default_factory=True),
                                                                        default_flow_style=True).strip()
        default = default.removesuffix("\n...")  # a YAML scalar document ends with an end marker
        resumable = "yes" if key in kind.RESUME_CHANGES else ""
        rows.append(f"| `{key}` | {kind_name} | `{default}` | {field.description or ''} | {resumable} |")
    return "\n".join(rows)


def _type_name(annotation: Any) -> str:
    """A type as a reader writes it: ``int``, ``int or none``, ``adamw / sgd``, ``list of int``."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " / ".join(str(value) for value in arguments)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(argument) for argument in arguments if argument is not type(None)]
        return " / ".join(names) + (" or none" if type(None) in arguments else "")
    if origin is list:
        return f"list of {_type_name(arguments[0])}"
    if origin is dict:
        return f"map of {_type_name(arguments[0])} to {_type_name(arguments[1])}"
    return getattr(annotation, "__name__", str(annotation))


def renamed(values: dict[str, Any], kind: type[FlatConfig]) -> dict[str, Any]:
    """``values`` with the keys ``kind`` has renamed under their new names (a value given under both names is the
    new name's)."""
    values = dict(values)
    for old, new in kind.RENAMED.items():
        if old in values:
            value = values.pop(old)
            values.setdefault(new, value)
    return values


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
            got = repr(item.get("input"))
            got = got if len(got) <= 80 else f"{got[:80]}..."  # a huge value is never echoed whole
            messages.append(f"{key}: {item['msg'].removeprefix('Value error, ')} (got {got})")
    return f"{source}: " + "; ".join(messages)


def make_config(values: dict[str, Any], source: str = "config", kind: type[Config] = TrainConfig) -> Config:
    """Validate ``values`` into a ``kind`` config (keys renamed since they were written are read under their new
    names); every problem is named in one ConfigError."""
    values = renamed(values, kind)
    try:
        return kind(**values)
    except ValidationError as error:
        raise ConfigError(_describe(error, source, kind)) from None


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def resolve_config(path: str | Path) -> Path:
    """A config path as given, or, when it does not exist from here, the shipped config of that name
    (``configs/demo.yaml`` works from any directory)."""
    path = Path(path)
    if regular_file(path):
        return path
    if os.path.lexists(path):
        raise ConfigError(f"{path}: not a regular file")
    shipped = SHIPPED_CONFIGS / path.name
    if not path.is_absolute() and (len(path.parts) == 1 or path.parts[0] == "configs") and shipped.is_file():
        return shipped
    raise ConfigError(f"{path}: no such config file (shipped configs: "
                      f"{', '.join(sorted(p.name for p in SHIPPED_CONFIGS.glob('*.yaml')))})")


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of flat keys; anything larger is not one
MAX_CONFIG_VALUES = 10_000  # values in a document once its aliases are expanded
MAX_CONFIG_DEPTH = 16  # a flat config has lists (lr_steps) and maps (recipes): two levels


class ConfigLoader(yaml.SafeLoader):
    """YAML as a config is written and as the README shows it: YAML 1.2's plain values. ``off``, ``on``, ``yes``
    and ``no`` are words (``--set compile=off`` is the compile mode "off", not false): only ``true`` and
    ``false`` are booleans; ``1e-3`` is a number, as it is in YAML 1.2 and in Python."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"),
                                   list("-+0123456789"))


def parse_yaml(text: str, source: str) -> Any:
    """A YAML document (``ConfigLoader``'s plain values), bounded: a ConfigError for one that is malformed, nested
    too deeply to be a flat config, or larger than MAX_CONFIG_VALUES once its aliases are expanded."""
    try:
        document = yaml.load(text, Loader=ConfigLoader)  # noqa: S506  (a SafeLoader: plain values only)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply; a config is a flat list of keys") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({str(error)[:300]})".replace("\n", " ")) from None
    return _bounded(document, source)


def _bounded(document: Any, source: str) -> Any:
    """Refuse a document that expands into more than MAX_CONFIG_VALUES values (YAML aliases can nest a few lines
    into billions, which validating or printing would then walk), or that nests deeper than MAX_CONFIG_DEPTH;
    walked without recursion, so no document can exhaust the stack."""
    budget = MAX_CONFIG_VALUES
    waiting = [(document, 0)]
    while waiting:
        value, depth = waiting.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(f"{source}: more than {MAX_CONFIG_VALUES:,} values once its aliases are expanded; a "
                              f"config is a flat list of keys")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{source}: nested deeper than {MAX_CONFIG_DEPTH} levels; a config is a flat list of "
                              f"keys")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        waiting += [(child, depth + 1) for child in children]
    return document


def parse_assignments(assignments: list[str] | None) -> dict[str, Any]:
    """``["batch_identities=5", "pretrained=null"]`` -> {"batch_identities": 5, "pretrained": None}: each value
    is read as YAML, as it would be in a config file."""
    values: dict[str, Any] = {}
    for assignment in assignments or []:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {assignment[:80]!r}")
        values[key.strip()] = parse_yaml(text, f"--set {key.strip()[:80]}") if text.strip() else None
    return values


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a flat YAML file (a shipped config by name, see ``resolve_config``)."""
    path = resolve_config(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a config (at most {MAX_CONFIG_BYTES:,})")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)[:200]
        raise ConfigError(f"{path}: cannot be read ({reason})") from None
    values = parse_yaml(text, str(path)) or {}
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


def resume_config(run: str | Path, assignments: list[str] | None = None, kind: type[Config] = TrainConfig,
                  **overrides: Any) -> Config:
    """The config a run directory was trained with (its config.yaml), with ``--set`` assignments and named
    ``overrides``: what ``reid train --output-dir RUN --resume`` continues, without --config."""
    path = Path(run) / "config.yaml"
    if not regular_file(path):
        raise ConfigError(f"{run}: no config.yaml, so no run to resume there (give --config to start one)")
    return load_config(path, kind, assignments, **overrides)
