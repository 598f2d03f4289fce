"""What ``reid models`` lists, answered at once: the paper's backbones with their recorded size and cost, and the
authors' released weight files. Torch-free.

Building a backbone to count its parameters and multiply-accumulates takes seconds (minutes for the whole list),
so the figures of the listed backbones are recorded here; ``reid models --measure`` builds the backbones and
measures them instead (``reid.models.backbones.measured_entry``; a test holds the record equal to the
measurement), as it does for any backbone the record does not hold.
"""
from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reid.errors import ReidError

# The backbones of the paper's VI-ReID comparison (Table VII), with the seeds' other systems.
PAPER_BACKBONES = (
    "attnet_xxs", "attnet_xs", "attnet_s", "attnet_t1", "attnet_t2", "attnet_t3", "attnet_t4",
    "resnet50", "convnext_tiny", "swin_tiny_patch4_window7_224", "pvt_v2_b1", "pvt_v2_b2",
    "maxvit_tiny_tf_224", "efficientformerv2_s2", "efficientformerv2_l",
    "atconv_swin_tiny", "atconv_pvt_v2_b1", "atconv_pvt_v2_b2",  # ATConv in place of their attention
    "acmix_swin_tiny_patch4_window7_224", "acmix_swin_small_patch4_window7_224",  # ACmix (Pan et al., CVPR 2022)
)
# Drop-in networks with no released weights: trained from scratch or with reid pretrain.
UNRELEASED = ("atconv_swin_tiny", "atconv_pvt_v2_b1", "atconv_pvt_v2_b2")
# Networks that only run at their native size (MaxViT's windows, EfficientFormerV2's attention biases).
FIXED_SIZE = {"maxvit_tiny_tf_224": (224, 224), "efficientformerv2_s2": (224, 224), "efficientformerv2_l": (224, 224)}

# name -> (parameters with the 1000-class head, MACs of one 224x224 image), as ``describe_backbone`` measures them
# (timm 1.0.31, torch 2.14.1)
RECORDED: dict[str, tuple[int, int]] = {
    "attnet_xxs": (2853556, 504908368),
    "attnet_xs": (5554902, 948388930),
    "attnet_s": (7681316, 1249563191),
    "attnet_t1": (13714900, 2265356784),
    "attnet_t2": (27010782, 4750253351),
    "attnet_t3": (49175682, 8730017320),
    "attnet_t4": (87320214, 15589460640),
    "resnet50": (25557032, 4089184256),
    "convnext_tiny": (28589128, 4455531264),
    "swin_tiny_patch4_window7_224": (28288354, 4490566656),
    "pvt_v2_b1": (14009000, 2108355584),
    "pvt_v2_b2": (25362856, 4026734592),
    "maxvit_tiny_tf_224": (30916528, 5551836656),
    "efficientformerv2_s2": (12710112, 1246863952),
    "efficientformerv2_l": (26322288, 2552546880),
    "atconv_swin_tiny": (26109568, 3702298944),
    "atconv_pvt_v2_b1": (11368824, 1886247936),
    "atconv_pvt_v2_b2": (19585160, 3568725056),
    "acmix_swin_tiny_patch4_window7_224": (28649908, 4645008384),
    "acmix_swin_small_patch4_window7_224": (50345080, 8992859136),
}
RECORDED_PROBE = (288, 144)  # the size whose "runs at" answer the record holds


@dataclass(frozen=True)
class BackboneEntry:
    """One line of ``reid models``.

    Attributes:
        name: timm model name.
        params: Parameters with the 1000-class ImageNet head.
        macs_224: Multiply-accumulates of one 224x224 image.
        input_size: The size it runs at when asked for the probed size, or None when not checked.
        note: Why it cannot run at the probed size, or None.
        weights: The authors' weight file: "ok: PATH", "missing: PATH", "does not load: ...", "none released";
            None for backbones whose weights come from timm's hub.
        measured: Whether the figures were measured now (else recorded).
    """

    name: str
    params: int
    macs_224: int
    input_size: tuple[int, int] | None
    note: str | None
    weights: str | None
    measured: bool

    def to_dict(self) -> dict:
        return dict(name=self.name, params=self.params, macs_224=self.macs_224,
                    input_size=None if self.input_size is None else list(self.input_size), note=self.note,
                    weights=self.weights, measured=self.measured)

    def cells(self) -> list[str]:
        if self.input_size is None:
            runs = "not checked (--measure)"
        else:
            runs = "yes" if self.note is None else f"no: fixed {self.input_size[0]}x{self.input_size[1]}"
        return [self.name, f"{self.params / 1e6:.3f}", f"{self.macs_224 / 1e9:.3f}", runs,
                self.weights or "timm's (--pretrained FILE)"]


@dataclass(frozen=True)
class ReleasedWeights:
    """An authors' ImageNet-1K weight file: the name the shipped configs expect under weights/, and the page that
    links the download (files are saved by hand; nothing is downloaded at run time)."""

    file: str
    page: str


ATTNET_RELEASE = "https://github.com/price112/Attentive-Convolution"
ACMIX_RELEASE = "https://github.com/LeapLabTHU/ACmix"
RELEASED_WEIGHTS = {
    **{name: ReleasedWeights(f"AttNet_{name.removeprefix('attnet_').upper()}.pth", ATTNET_RELEASE)
       for name in ("attnet_xxs", "attnet_xs", "attnet_s", "attnet_t1", "attnet_t2", "attnet_t3", "attnet_t4")},
    "acmix_swin_tiny_patch4_window7_224": ReleasedWeights("ACmix_Swin_T.pth", ACMIX_RELEASE),
    "acmix_swin_small_patch4_window7_224": ReleasedWeights("ACmix_Swin_S.pth", ACMIX_RELEASE),
    # AGW's ResNet-50 starts from torchvision's original ImageNet file (resnet.py line 11 of the AGW baseline); its
    # keys are timm's resnet50's, so the published baseline's start is one saved file away
    "resnet50": ReleasedWeights("resnet50-19c8e357.pth", "https://download.pytorch.org/models/resnet50-19c8e357.pth"),
}
NONE_RELEASED = "none released (train from scratch or with reid pretrain)"


def recorded_entry(name: str, probe: tuple[int, int], weights: str | None) -> BackboneEntry | None:
    """The line of ``reid models`` for a recorded backbone (None when the record does not hold it).

    Args:
        weights: The weights column (see ``weights_file``).
    """
    if name not in RECORDED:
        return None
    params, macs = RECORDED[name]
    size, note = (tuple(probe) if tuple(probe) == RECORDED_PROBE else None), None
    if name in FIXED_SIZE:
        size = FIXED_SIZE[name]
        if tuple(probe) != size:
            note = f"{name} needs a fixed input size; using its native {size[0]}x{size[1]} instead of " \
                   f"{probe[0]}x{probe[1]}"
    return BackboneEntry(name, params, macs, size, note, weights, False)


def weights_file(name: str, folder: str | Path) -> Path | str | None:
    """Where the authors' file of ``name`` should be (a Path: check it loads), a settled answer (a string:
    missing, none released), or None for backbones whose weights come from timm's hub."""
    if name in UNRELEASED:
        return NONE_RELEASED
    if name not in RELEASED_WEIGHTS:
        return None
    path = Path(folder) / RELEASED_WEIGHTS[name].file
    return path if path.is_file() else f"missing: {path}"


def weights_note(entries: list[BackboneEntry], weights_dir: str | Path) -> str:
    """Where to get the authors' files the listing found missing or broken."""
    pages = sorted({RELEASED_WEIGHTS[e.name].page for e in entries
                    if e.name in RELEASED_WEIGHTS and e.weights and not e.weights.startswith("ok")})
    return (f"ImageNet weights: the authors' files are linked from {' and '.join(pages)}; save them in "
            f"{weights_dir}/ under the names above")


_REGISTERED = re.compile(r"@register_model(?:\([^)]*\))?\s*\ndef\s+(\w+)\s*\(")
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.DOTALL)
_DEPRECATED_NAME = re.compile(r"['\"](\w+)['\"]\s*:")


@functools.cache
def registered_models() -> frozenset[str]:
    """Every name ``timm.create_model`` takes (timm's models, their deprecated names, and this project's AttNet,
    ACmix and drop-ins), read from the sources that register them without importing them: a backbone name is
    checked in milliseconds, before torch is loaded."""
    folders = [Path(__file__).parent / "models"]
    spec = importlib.util.find_spec("timm")
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "models")
    names: set[str] = set()
    for folder in folders:
        for source in folder.glob("*.py"):
            text = source.read_text(encoding="utf-8", errors="replace")
            names.update(_REGISTERED.findall(text))
            for block in _DEPRECATIONS.findall(text):
                names.update(_DEPRECATED_NAME.findall(block))
    return frozenset(names)


def check_backbone(name: str) -> None:
    """A ReidError for a name timm cannot create ("resnet50.a1_in1k" names a pretrained tag of resnet50 and is
    accepted)."""
    if name.split(".")[0] not in registered_models():
        raise ReidError(unknown_backbone(name, registered_models()))


def unknown_backbone(name: str, known: Iterable[str]) -> str:
    """What a name that is not a model is told: the names it resembles."""
    close = difflib.get_close_matches(name, sorted(known), n=5)
    return f"unknown backbone {name!r}" + (f"; similar: {', '.join(close)}" if close else "")
