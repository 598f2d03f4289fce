"""torch.compile for training steps and embedding passes: one setting, resolved per device and workload.

Modes: ``off``; ``default``, ``max-autotune`` and ``reduce-overhead`` (CUDA graphs) are torch.compile's and always
compile, as asked; ``auto`` compiles only where the compilation pays for itself:

* **training** on CUDA with at least ``TRAINING_STEPS_TO_COMPILE`` (3,000) optimiser steps: ``reduce-overhead``.
  Measured on an H100 (AttNet-T1, bf16, channels_last): compiling took 237 s before the first step, after which it
  trained 2,452 images/s against 562 eager (3.8x), so the compilation is repaid after about 170,000 images, 2,700
  steps of 64. An LLCM run of the shipped configs is about 28,000 steps; the demo is 1,200 (and runs on a CPU);
* **embedding passes** (evaluation, galleries, archives, queries) on CUDA over at least ``IMAGES_TO_COMPILE``
  (2,500,000) images. Eager inference runs at about 5,000 images/s there, so even a 2x faster compiled model needs
  about 2.4M images to repay 237 s: evaluating a test set, building a gallery of a dataset and every single-query
  command stay eager;
* never on a CPU, where compiling does not speed AttNet up (BENCHMARKS.md).

A compilation that fails (an unsupported operation, a graph break, a Triton or compiler problem, CUDA-graph capture
under DDP) never fails the run: the model runs eagerly from that call on and ``on_fallback`` gets one line saying
why and how to silence it (``--compile off``). Only the model is compiled: the losses (with their data-dependent
triplet mining) and the optimiser step run eagerly around it. Shapes stay static: training batches have a fixed
size (the sampler never yields a short batch) and the last, smaller batch of an embedding pass is padded
(``pad_batch``), so nothing is compiled twice.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reid.settings import COMPILE_MODES, CompileMode

if TYPE_CHECKING:  # torch is imported where it runs
    import torch
    from torch import nn

TRAINING_STEPS_TO_COMPILE = 3_000
IMAGES_TO_COMPILE = 2_500_000
# torch.compile's backend; the tests switch it to "aot_eager", which captures the same graphs without
# generating code (minutes of C++ compilation on a CPU)
BACKEND = "inductor"


def resolve_compile(mode: CompileMode, device: torch.device | str, steps: int | None = None,
                    images: int | None = None) -> str | None:
    """The torch.compile mode for a training run of ``steps`` optimiser steps, or an embedding pass over ``images``
    images, on ``device``; None for eager. Explicit modes are returned as they are; see the module for ``auto``."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode != "auto":
        return None if mode == "off" else mode
    if not str(device).startswith("cuda"):
        return None
    pays = (steps or 0) >= TRAINING_STEPS_TO_COMPILE or (images or 0) >= IMAGES_TO_COMPILE
    return "reduce-overhead" if pays else None


class EagerFallback:
    """Calls a compiled model, and the eager model from the first call whose compilation (or CUDA-graph capture)
    fails on: the run goes on, and ``on_fallback`` is told once why.

    It is a plain callable, not a module, so the compiled model's parameters are registered once (in the model).
    """

    def __init__(self, model: nn.Module, compiled: Callable, mode: str,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.model, self.compiled, self.mode, self.on_fallback = model, compiled, mode, on_fallback

    @property
    def fell_back(self) -> bool:
        """Whether a compilation failed and the calls now run the eager model."""
        return self.compiled is None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.model(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (dynamo, inductor, Triton and CUDA-graph errors have many types)
            self.fall_back(error)
            return self.model(*args, **kwargs)

    def fall_back(self, error: BaseException) -> None:
        """Run the eager model from now on, and tell ``on_fallback`` why (once). A training step calls this when
        the compiled backward fails (AOTAutograd compiles it at the first ``loss.backward()``)."""
        if self.compiled is None:
            return
        self.compiled = None
        import torch._dynamo

        torch._dynamo.reset()
        if self.on_fallback is not None:
            root = error  # dynamo wraps the backend's own error (BackendCompilerFailed.inner_exception)
            while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
                root = inner
            first = next((line.strip() for line in str(root).splitlines() if line.strip()), "")
            self.on_fallback(f"torch.compile ({self.mode}) failed, so the model runs eagerly "
                             f"({type(root).__name__}: {first[:160]}); --compile off skips the attempt")

    @property
    def module(self) -> nn.Module:
        """The model it wraps (``reid.models.weights.unwrap_model`` looks here, as for DDP)."""
        return self.model

    def __getattr__(self, name: str):  # train(), eval(), parameters() ... of the model
        return getattr(self.model, name)


def compile_model(model: nn.Module, mode: CompileMode, device: torch.device | str, steps: int | None = None,
                  images: int | None = None, on_fallback: Callable[[str], None] | None = None) -> Callable:
    """``model`` compiled as ``mode`` says for the workload (see ``resolve_compile``), with the eager fallback; the
    model itself when eager. The compiled model shares the model's parameters; checkpoints are written from the
    model, so they carry no compile prefix."""
    import torch

    resolved = resolve_compile(mode, device, steps, images)
    if resolved is None:
        return model
    if BACKEND != "inductor":  # modes are inductor's options
        compiled = torch.compile(model, backend=BACKEND, dynamic=False)
    else:
        compiled = torch.compile(model, mode=resolved, backend=BACKEND, dynamic=False)
    return EagerFallback(model, compiled, resolved, on_fallback)


def pad_batch(tensors: tuple[torch.Tensor, ...], size: int) -> tuple[tuple[torch.Tensor, ...], int]:
    """Pad each tensor's first dimension to ``size`` by repeating its last row; returns the tensors and how many
    rows are real (a compiled model then sees one shape only)."""
    import torch

    count = len(tensors[0])
    if count >= size:
        return tensors, count
    return tuple(torch.cat([t, t[-1:].expand(size - count, *t.shape[1:])]) for t in tensors), count
