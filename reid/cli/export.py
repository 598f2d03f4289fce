"""``reid export`` and ``reid extract``: a trained model, or its embeddings, for use elsewhere."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import (
    BatchOptions,
    ModelSource,
    RunOptions,
    SampleOptions,
    choice,
    choice_option,
    command,
    console,
    embedding_progress,
    group,
    load_embedder,
    value_of,
    writable,
)
from reid.errors import problems_of, refuse

app = group("Export models and embeddings.")
ExportFormat = choice("ExportFormat", ("onnx",))


@command(app, "export")
def export_command(
        out: Annotated[Path, typer.Option(metavar="PATH", help="The file to write, e.g. model.onnx")],
        model: ModelSource,
        export_format: Annotated[ExportFormat, choice_option(ExportFormat, "--format", help="Export format")]
        = ExportFormat.onnx,
        opset: Annotated[int, typer.Option(min=13, metavar="INT", help="ONNX opset")] = 17,
) -> None:
    """Export the embedding model (images -> L2-normalised embeddings, dynamic batch) with its preprocessing in the
    file's metadata, and check it against PyTorch with onnxruntime."""
    from reid.errors import require

    refuse(model.problems() + problems_of(lambda: require("onnx", "export", "reid export"))
           + writable(("--out", out)))
    from reid.engine.export import export_onnx

    embedder = load_embedder(model, device="cpu")
    with console.status(f"exporting {embedder.description} to {value_of(export_format)}"):
        result = export_onnx(embedder, out, opset)
    shape = "x".join(map(str, result.input_shape[1:]))
    check = "not checked (pip install onnxruntime)" if result.max_difference is None else \
        f"onnxruntime vs PyTorch: max difference {result.max_difference:.2e}"
    console.print(f"wrote {result.path}: images (batch x {shape}) -> embeddings; {check}")


@command(app, "extract")
def extract_command(
        out: Annotated[Path, typer.Option(metavar="PATH", help="The .npz file to write")],
        model: ModelSource,
        run: RunOptions,
        batches: BatchOptions,
        samples: SampleOptions,
) -> None:
    """Write embeddings with their paths, pids, camids and modalities to an .npz, for your own retrieval."""
    refuse(model.problems() + samples.problems() + writable(("--out", out)))
    from reid.engine.export import extract_archive

    chosen = samples.samples()
    embedder = load_embedder(model, run, batches)
    bar, advance = embedding_progress(len(chosen))
    with bar:
        path = extract_archive(embedder, chosen, out, advance)
    console.print(f"wrote {path}: {len(chosen)} x {embedder.num_features} embeddings with paths, pids, camids, "
                  f"modalities")
