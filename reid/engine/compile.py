"""torch.compile for training steps and embedding passes: one setting, resolved per device.

Modes: ``off``; ``default``, ``max-autotune`` and ``reduce-overhead`` (CUDA graphs) are torch.compile's; ``auto``
is ``reduce-overhead`` on CUDA, where AttNet's many small kernels leave the GPU idle without graphs, and ``off`` on
a CPU, where compiling does not speed AttNet up (BENCHMARKS.md). Only the model is compiled: the losses (with
their data-dependent triplet mining) and the optimiser step run eagerly around it, so nothing breaks the graph.
Shapes stay static: training batches have a fixed size (the sampler never yields a short batch) and the last,
smaller batch of an embedding pass is padded (``pad_batch``), so nothing is compiled twice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where it runs, so the command line reads the modes without it
    import torch
    from torch import nn

CompileMode = Literal["auto", "off", "default", "max-autotune", "reduce-overhead"]
COMPILE_MODES: tuple[CompileMode, ...] = ("auto", "off", "default", "max-autotune", "reduce-overhead")
# torch.compile's backend; the tests switch it to "aot_eager", which captures the same graphs without
# generating code (minutes of C++ compilation on a CPU)
BACKEND = "inductor"


def resolve_compile(mode: CompileMode, device: torch.device | str) -> str | None:
    """The torch.compile mode to use on ``device``, or None for eager."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "reduce-overhead" if str(device).startswith("cuda") else None
    return None if mode == "off" else mode


def compile_model(model: nn.Module, mode: CompileMode, device: torch.device | str) -> nn.Module:
    """``model`` compiled as ``mode`` asks on ``device`` (the model itself when eager). The compiled wrapper shares
    the model's parameters; checkpoints are written from the unwrapped model, so they carry no compile prefix."""
    import torch

    resolved = resolve_compile(mode, device)
    if resolved is None:
        return model
    if BACKEND != "inductor":  # modes are inductor's options
        return torch.compile(model, backend=BACKEND, dynamic=False)
    return torch.compile(model, mode=resolved, backend=BACKEND, dynamic=False)


def pad_batch(tensors: tuple[torch.Tensor, ...], size: int) -> tuple[tuple[torch.Tensor, ...], int]:
    """Pad each tensor's first dimension to ``size`` by repeating its last row; returns the tensors and how many
    rows are real (a compiled model then sees one shape only)."""
    import torch

    count = len(tensors[0])
    if count >= size:
        return tensors, count
    return tuple(torch.cat([t, t[-1:].expand(size - count, *t.shape[1:])]) for t in tensors), count
