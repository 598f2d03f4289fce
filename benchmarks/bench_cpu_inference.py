"""Embedding speed on a CPU under the engines a search can run on, measured in one process, interleaved:

* ``eager``: PyTorch as the project runs it (AttNet's own CPU inference paths);
* ``channels-last``: the model and its input in channels-last memory (oneDNN's preferred layout);
* ``compiled``: ``torch.compile`` (inductor; its compilation time is reported, not counted);
* ``onnxruntime``: ONNX Runtime over the file ``reid export`` writes (``reid.engine.onnx``), with torch's thread
  count.

For each model (random weights: speed does not depend on them) and batch (1 and 32): images per second, the ratio
to eager, and the largest difference of the L2-normalised embeddings from eager's. ``--busy N`` runs N CPU-bound
processes beside the measurement (a busy machine).

    python benchmarks/bench_cpu_inference.py [--models attnet_t1:288x144,attnet_xxs:96x48] [--rounds 7]
        [--threads 2] [--busy 0] [--skip compiled]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import reid.models  # noqa: F401  (registers attnet_*)
from reid.data.transforms import eval_pipeline
from reid.engine.export import export_onnx
from reid.engine.inference import Embedder
from reid.engine.onnx import OnnxRunner, _session
from reid.models.reid_model import ReIDModel
from reid.profiling import interleaved_medians
from reid.report import markdown_table
from reid.settings import AugmentConfig, parse_size

SPIN = "while True: pass"


def engines(model: ReIDModel, size: tuple[int, int], folder: Path, skip: set[str]) -> tuple[dict, dict]:
    """name -> a function embedding a batch (B, 3, H, W), and name -> seconds spent preparing it."""
    made, prepared = {"eager": lambda images: model(images).embeddings}, {}
    if "channels-last" not in skip:
        last = ReIDModel(model.backbone_name, model.num_classes, size).eval()
        last.load_state_dict(model.state_dict())
        last = last.to(memory_format=torch.channels_last)
        made["channels-last"] = lambda images: last(images.contiguous(memory_format=torch.channels_last)).embeddings
    if "compiled" not in skip:
        compiled = torch.compile(model, dynamic=False)
        made["compiled"] = lambda images: compiled(images).embeddings
    if "onnxruntime" not in skip:
        start = time.perf_counter()
        embedder = Embedder(model, eval_pipeline(AugmentConfig(*size)), model.backbone_name, "bench")
        export_onnx(embedder, folder / f"{model.backbone_name}.onnx", normalize=False)
        runner = OnnxRunner(_session(folder / f"{model.backbone_name}.onnx"), folder / "m.onnx")
        prepared["onnxruntime"] = time.perf_counter() - start
        made["onnxruntime"] = lambda images: runner(images).embeddings
    return made, prepared


def normalised(array: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(array.float(), dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="attnet_t1:288x144,attnet_xxs:96x48")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch's threads (default: its own)")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes running beside the measurement")
    parser.add_argument("--skip", default="", help="engines to leave out, e.g. compiled")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    competitors = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder, torch.no_grad():
            for entry in args.models.split(","):
                name, size = entry.split(":")
                size = parse_size(size)
                torch.manual_seed(0)
                model = ReIDModel(name, 10, size).eval()
                made, prepared = engines(model, size, Path(folder), skip)
                for batch in map(int, args.batches.split(",")):
                    images = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
                    start = time.perf_counter()
                    outputs = {engine: function(images) for engine, function in made.items()}  # compiles, warms
                    if "compiled" in made and batch == int(args.batches.split(",")[0]):
                        prepared["compiled"] = time.perf_counter() - start
                    seconds = interleaved_medians(
                        {engine: (lambda function=function, images=images: function(images))
                         for engine, function in made.items()}, rounds=args.rounds)
                    reference = normalised(outputs["eager"])
                    for engine, value in seconds.items():
                        difference = float(np.abs(normalised(outputs[engine]) - reference).max())
                        rows.append([name, f"{size[0]}x{size[1]}", batch, engine, f"{batch / value:.1f}",
                                     f"{seconds['eager'] / value:.2f}x", f"{difference:.1e}",
                                     f"{prepared[engine]:.0f}" if engine in prepared else "-"])
    finally:
        for process in competitors:
            process.kill()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"{'idle' if not args.busy else f'{args.busy} CPU-bound processes beside it'}, medians of {args.rounds} "
          f"interleaved rounds\n")
    print(markdown_table(["model", "input", "batch", "engine", "images/s", "vs eager",
                          "max difference (normalised)", "preparing (s)"], rows))


if __name__ == "__main__":
    main()
