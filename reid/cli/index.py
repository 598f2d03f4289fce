"""``reid index ...``: FAISS galleries, built, searched, grown, pruned and compacted."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reid.cli.common import (
    BatchOptions,
    GalleryOption,
    ImagePaths,
    ImagesOption,
    IndexTypeChoice,
    ModalityChoice,
    ModelSource,
    RunOptions,
    SampleOptions,
    choice_option,
    command,
    console,
    embedding_progress,
    errors,
    group,
    load_embedder,
    note,
    value_of,
)
from reid.errors import ReidError, refuse
from reid.index.settings import INDEX_TYPES
from reid.io import directory, regular_file

app = group("FAISS galleries: build, query, inspect, add to, remove from and compact.", name="index")


def _waiting(gallery: Path) -> Callable[[str], None]:
    return lambda holder: errors.print(f"waiting for {holder}, which is writing {gallery}")


def gallery_problems(index: Path) -> list[str]:
    """An --index that is not a gallery directory (told before torch loads)."""
    if not directory(index):
        return [f"--index {index}: no such gallery directory"]
    if not regular_file(index / "manifest.json"):
        return [f"--index {index}: not a gallery (no manifest.json); build one with reid index build"]
    return []


def image_problems(paths: list[Path], option: str) -> list[str]:
    if not paths:
        return [f"give images: {option} PATH (repeatable) or paths after the options"]
    return [f"{path}: {'not a regular file or folder' if os.path.lexists(path) else 'no such image or folder'}"
            for path in paths if not (regular_file(path) or directory(path))]


@command(app, "build")
def index_build_command(
        out: Annotated[Path, typer.Option(metavar="PATH", help="Gallery directory to write")],
        model: ModelSource,
        run: RunOptions,
        batches: BatchOptions,
        samples: SampleOptions,
        index_type: Annotated[IndexTypeChoice, choice_option(IndexTypeChoice, "--type", help=", ".join(
            f"{name}: {kind.summary}" for name, kind in INDEX_TYPES.items()))] = IndexTypeChoice.flat,
        nlist: Annotated[int | None, typer.Option(min=1, metavar="INT", help="IVF types: inverted lists")] = None,
        nprobe: Annotated[int, typer.Option(min=1, metavar="INT", help="IVF types: lists searched")] = 64,
        hnsw_m: Annotated[int, typer.Option(min=4, metavar="INT", help="hnsw: links per node")] = 32,
        ef_search: Annotated[int, typer.Option(min=1, metavar="INT", help="hnsw: search depth")] = 128,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a gallery --out already holds (never "
                                                                    "a folder that is not a gallery)")] = False,
) -> None:
    """Embed a dataset split or a folder of images and save a FAISS gallery."""
    from reid.index import IndexSettings, gallery_lock
    from reid.index.store import replace_problems

    refuse(model.problems() + samples.problems() + replace_problems(out, overwrite))
    settings = IndexSettings(type=value_of(index_type), hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)
    with gallery_lock(out, waiting=_waiting(out)) as real:  # held for the whole build: nothing changes it meanwhile
        refuse(replace_problems(real, overwrite))  # again under the lock: another process may have written it
        chosen = samples.samples()
        embedder = load_embedder(model, run, batches)
        from reid.engine.galleries import build_gallery

        bar, advance = embedding_progress(len(chosen))
        with bar:
            gallery = build_gallery(embedder, chosen, settings, progress=advance)
        gallery.save(real)
    console.print(f"gallery of {gallery.live_count} items ({gallery.settings.type}, {embedder.backbone}) -> {out}")


@command(app, "add")
def index_add_command(
        index: GalleryOption,
        model: ModelSource,
        run: RunOptions,
        batches: BatchOptions,
        paths: ImagePaths = None,
        images: ImagesOption = None,
        modality: Annotated[ModalityChoice | None, choice_option(ModalityChoice, help="Default: guessed, grayscale "
                                                                                     "= ir")] = None,
        label: Annotated[str | None, typer.Option(metavar="TEXT", help="A free label stored with each new item")]
        = None,
        pid: Annotated[int | None, typer.Option(min=0, metavar="INT", help="The identity of the new items, when "
                                                                           "known")] = None,
        camid: Annotated[int | None, typer.Option(min=0, metavar="INT", help="Their camera, when known")] = None,
) -> None:
    """Embed more images with the gallery's own model and add them."""
    given = list(images or []) + list(paths or [])
    refuse(gallery_problems(index) + model.problems() + image_problems(given, "--images"))
    from reid.engine.galleries import image_samples, sample_metadata
    from reid.index import Gallery

    chosen = [replace(sample, pid=sample.pid if pid is None else pid, camid=sample.camid if camid is None else camid)
              for sample in image_samples(given, value_of(modality))]
    embedder = load_embedder(model, run, batches)
    Gallery.load(index).check_model(embedder.backbone, embedder.num_features, embedder.digest)  # before the work
    embeddings = embedder.embeddings(chosen)
    with Gallery.updating(index, waiting=_waiting(index)) as gallery:
        added = gallery.add(embeddings, [sample_metadata(s, label) for s in chosen])
    skipped = f" ({len(chosen) - added} already in the gallery)" if added < len(chosen) else ""
    console.print(f"added {added} items{skipped}; the gallery now holds {gallery.live_count}")


@command(app, "remove")
def index_remove_command(
        index: GalleryOption,
        paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Paths of the items to remove")],
) -> None:
    """Remove items by path (searches skip them at once; `reid index compact` reclaims their space)."""
    refuse(gallery_problems(index))
    from reid.index import Gallery

    with Gallery.updating(index, waiting=_waiting(index)) as gallery:
        removed, missing = gallery.remove(paths)
        if not removed:
            raise ReidError(f"none of the {len(paths)} paths is in the gallery {index}")
    console.print(f"removed {removed} items; {gallery.live_count} remain")
    if missing:
        note(f"not in the gallery: {', '.join(missing[:10])}" + (f" (+{len(missing) - 10} more)"
                                                                if len(missing) > 10 else ""))


@command(app, "compact")
def index_compact_command(index: GalleryOption) -> None:
    """Rebuild a gallery without its removed items (the index keeps its training; nothing is embedded again)."""
    refuse(gallery_problems(index))
    from reid.index import Gallery, gallery_lock

    with gallery_lock(index, waiting=_waiting(index)):
        gallery = Gallery.load(index)
        removed = gallery.removed_count
        compacted = gallery.compact()
        compacted.save(index)
    console.print(f"compacted {index}: {removed} removed items dropped, {compacted.live_count} remain")


@command(app, "info")
def index_info_command(index: GalleryOption) -> None:
    """Print a gallery's manifest."""
    refuse(gallery_problems(index))
    from reid.index import Gallery

    gallery = Gallery.load(index)
    typer.echo(json.dumps(gallery.manifest.model_dump() | {"by_modality": gallery.counts_by_modality(),
                                                            "removed": gallery.removed_count}, indent=2))


@command(app, "query")
def index_query_command(
        index: GalleryOption,
        model: ModelSource,
        run: RunOptions,
        batches: BatchOptions,
        paths: ImagePaths = None,
        image: ImagesOption = None,
        top_k: Annotated[int, typer.Option(min=1, metavar="INT", help="Results per query")] = 10,
        modality: Annotated[ModalityChoice | None, choice_option(ModalityChoice, help="Only gallery items of this "
                                                                                     "modality")] = None,
        cameras: Annotated[list[int] | None, typer.Option("--camera", metavar="INT", help="Only gallery items known "
                                                                                          "to be from this camera "
                                                                                          "(repeatable)")] = None,
        exclude_camera: Annotated[list[int] | None, typer.Option(metavar="INT", help="Skip the gallery items known "
                                                                                     "to be from this camera "
                                                                                     "(repeatable; items of unknown "
                                                                                     "camera stay)")] = None,
        query_modality: Annotated[ModalityChoice | None, choice_option(ModalityChoice, help="Default: guessed, "
                                                                                           "grayscale = ir")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result line")] = False,
        visualize: Annotated[Path | None, typer.Option(metavar="PATH", help="Save the rank lists as a picture")]
        = None,
) -> None:
    """Search a gallery with query images; the model must be the one that built the gallery."""
    from reid.cli.common import writable

    given = list(image or []) + list(paths or [])
    refuse(gallery_problems(index) + model.problems() + image_problems(given, "--image")
           + writable(("--visualize", visualize)))
    from reid.engine.galleries import image_samples
    from reid.index import Gallery
    from reid.visualize import RankList, draw_rank_lists

    gallery = Gallery.load(index)
    embedder = load_embedder(model, run, batches)
    gallery.check_model(embedder.backbone, embedder.num_features, embedder.digest)
    queries = image_samples(given, value_of(query_modality))
    excluded = tuple(exclude_camera) if exclude_camera else None
    results = gallery.search(embedder.embeddings(queries), top_k, modality=value_of(modality),
                             exclude_camids=None if excluded is None else [excluded] * len(queries),
                             camids=cameras)
    if not any(results):
        filters = [f"modality {value_of(modality)}" if modality else "", f"cameras {cameras}" if cameras else "",
                   f"not cameras {list(excluded)}" if excluded else ""]
        note(f"no gallery item passes the filters ({', '.join(f for f in filters if f)}); the gallery holds "
             f"{gallery.counts_by_modality()}")
    for query, hits in zip(queries, results, strict=True):
        if as_json:
            for hit in hits:
                typer.echo(json.dumps({"query": query.path, "rank": hit.rank, "score": round(hit.score, 6),
                                       "path": hit.path, "pid": hit.pid, "camid": hit.camid,
                                       "modality": hit.modality}))
            continue
        table = Table(title=f"{escape(str(query.path))} ({query.modality})")
        for column in ("rank", "score", "path", "pid", "camid", "modality"):
            table.add_column(column, justify="right" if column in ("rank", "score") else "left", overflow="fold")
        for hit in hits:
            table.add_row(str(hit.rank), f"{hit.score:.4f}", escape(str(hit.path)), str(hit.pid), str(hit.camid),
                          str(hit.modality))
        console.print(table)
    if visualize:
        lists = [RankList(query, [hit.sample() for hit in hits], [hit.score for hit in hits])
                 for query, hits in zip(queries, results, strict=True)]
        draw_rank_lists({"query": lists}, visualize, f"{index}: top-{top_k}")
        console.print(f"rank lists: {visualize}")
