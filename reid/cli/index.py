"""``reid index ...``: galleries, built, searched, grown, pruned, compacted and moved, in FAISS or in Milvus."""
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
    time_option,
    value_of,
    writable,
)
from reid.errors import ReidError, problems_of, refuse, require
from reid.index.settings import INDEX_TYPES
from reid.io import directory, regular_file

app = group("Galleries (FAISS files, or a Milvus collection): build, query, inspect, add to, remove from, compact "
            "and migrate.", name="index")
MAX_ID = 2 ** 63 - 1


def _is_milvus(address: str) -> bool:
    return address.startswith(("milvus:", "milvus+https:"))


def _waiting(gallery: str) -> Callable[[str], None]:
    return lambda holder: errors.print(f"waiting for {holder}, which is writing {gallery}")


def gallery_problems(index: str, option: str = "--index") -> list[str]:
    """An address that is not a gallery's (told before torch loads; a Milvus collection is looked up later)."""
    if _is_milvus(index):
        from reid.index.milvus import Address

        return problems_of(lambda: Address.parse(index), lambda: require("pymilvus", "milvus", "a Milvus gallery"))
    if not directory(index):
        return [f"{option} {index}: no such gallery directory"]
    if not regular_file(Path(index) / "manifest.json"):
        return [f"{option} {index}: not a gallery (no manifest.json); build one with reid index build"]
    return []


def image_problems(paths: list[Path], option: str) -> list[str]:
    if not paths:
        return [f"give images: {option} PATH (repeatable) or paths after the options"]
    return [f"{path}: {'not a regular file or folder' if os.path.lexists(path) else 'no such image or folder'}"
            for path in paths if not (regular_file(path) or directory(path))]


@command(app, "build")
def index_build_command(
        out: Annotated[str, typer.Option(metavar="GALLERY", help="Gallery to write: a directory, or a Milvus "
                                                                 "address (milvus://HOST:PORT/COLLECTION, "
                                                                 "milvus:FILE.db/COLLECTION)")],
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
        timestamp: Annotated[str | None, time_option("When the items were seen")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a gallery --out already holds (never "
                                                                    "a folder that is not a gallery)")] = False,
) -> None:
    """Embed a dataset split or a folder of images and save a gallery."""
    from reid.index import IndexSettings
    from reid.index.store import replace_problems

    problems = model.problems() + samples.problems()
    if _is_milvus(out):
        problems += gallery_problems(out, "--out")
    else:
        problems += replace_problems(out, overwrite)
    refuse(problems)
    settings = IndexSettings(type=value_of(index_type), hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)
    source = {"dataset": samples.dataset, "split": samples.split.value} if samples.dataset else None
    if _is_milvus(out):
        gallery = _build_milvus(out, model, run, batches, samples, settings, source, timestamp, overwrite)
    else:
        gallery = _build_faiss(Path(out), model, run, batches, samples, settings, source, timestamp, overwrite)
    console.print(f"gallery of {gallery.live_count} items ({gallery.settings.type}, {gallery.manifest.backbone}) "
                  f"-> {out}")


def _embedded(model, run, batches, samples, timestamp):
    from reid.engine.galleries import sample_metadata

    chosen = samples.samples()
    embedder = load_embedder(model, run, batches)
    bar, advance = embedding_progress(len(chosen))
    with bar:
        vectors = embedder.embeddings(chosen, advance)
    return embedder, vectors, [sample_metadata(s, timestamp=timestamp) for s in chosen]


def _build_faiss(out: Path, model, run, batches, samples, settings, source, timestamp, overwrite):
    from reid.index import Gallery, gallery_lock
    from reid.index.store import replace_problems

    with gallery_lock(out, waiting=_waiting(str(out))) as real:  # held for the whole build: nothing changes it
        refuse(replace_problems(real, overwrite))  # again under the lock: another process may have written it
        embedder, vectors, metadata = _embedded(model, run, batches, samples, timestamp)
        gallery = Gallery.build(vectors, metadata, embedder.backbone, settings, embedder.digest,
                                use_gpu=embedder.device.type == "cuda", source=source)
        gallery.save(real)
    return gallery


def _build_milvus(out: str, model, run, batches, samples, settings, source, timestamp, overwrite):
    from reid.index.milvus import MilvusGallery

    if not overwrite and MilvusGallery.exists(out):
        raise ReidError(f"--out {out}: already holds a gallery; add to it with reid index add, or replace it with "
                        f"--overwrite")
    embedder, vectors, metadata = _embedded(model, run, batches, samples, timestamp)
    return MilvusGallery.build(out, vectors, metadata, embedder.backbone, settings, embedder.digest, source,
                               overwrite)


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
        pid: Annotated[int | None, typer.Option(min=0, max=MAX_ID, metavar="INT", help="The identity of the new "
                                                                                      "items, when known")] = None,
        camid: Annotated[int | None, typer.Option(min=0, max=MAX_ID, metavar="INT", help="Their camera, when "
                                                                                        "known")] = None,
        timestamp: Annotated[str | None, time_option("When they were seen")] = None,
) -> None:
    """Embed more images with the gallery's own model and add them."""
    given = list(images or []) + list(paths or [])
    refuse(gallery_problems(index) + model.problems() + image_problems(given, "--images"))
    from reid.engine.galleries import image_samples, sample_metadata
    from reid.index.backends import open_store

    store = open_store(index)
    chosen = [replace(sample, pid=sample.pid if pid is None else pid, camid=sample.camid if camid is None else camid)
              for sample in image_samples(given, value_of(modality))]
    embedder = load_embedder(model, run, batches)
    store.current().check_model(embedder.backbone, embedder.num_features, embedder.digest)  # before the work
    embeddings = embedder.embeddings(chosen)
    with store.updating(waiting=_waiting(index)) as gallery:
        added = gallery.add(embeddings, [sample_metadata(s, label, timestamp) for s in chosen])
    skipped = f" ({len(chosen) - len(added)} already in the gallery)" if len(added) < len(chosen) else ""
    console.print(f"added {len(added)} items{skipped}; the gallery now holds {gallery.live_count}")


@command(app, "remove")
def index_remove_command(
        index: GalleryOption,
        paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Paths of the items to remove")],
) -> None:
    """Remove items by path (searches skip them at once; `reid index compact` reclaims their space)."""
    refuse(gallery_problems(index))
    from reid.index.backends import open_store

    with open_store(index).updating(waiting=_waiting(index)) as gallery:
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
    from reid.index.backends import open_store

    removed, left = open_store(index).compact(waiting=_waiting(index))
    console.print(f"compacted {index}: {removed} removed items dropped, {left} remain")


@command(app, "info")
def index_info_command(index: GalleryOption) -> None:
    """Print a gallery's manifest."""
    refuse(gallery_problems(index))
    from reid.index.backends import open_store

    store = open_store(index)
    gallery = store.current()
    typer.echo(json.dumps(gallery.manifest.model_dump() | {"backend": store.backend,
                                                            "by_modality": gallery.counts_by_modality(),
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
        pid: Annotated[int | None, typer.Option(metavar="INT", help="Only gallery items of this identity")] = None,
        since: Annotated[str | None, time_option("Only gallery items seen at or after this time")] = None,
        until: Annotated[str | None, time_option("Only gallery items seen at or before this time")] = None,
        query_modality: Annotated[ModalityChoice | None, choice_option(ModalityChoice, help="Default: guessed, "
                                                                                           "grayscale = ir")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result line")] = False,
        visualize: Annotated[Path | None, typer.Option(metavar="PATH", help="Save the rank lists as a picture")]
        = None,
) -> None:
    """Search a gallery with query images; the model must be the one that built the gallery."""
    given = list(image or []) + list(paths or [])
    refuse(gallery_problems(index) + model.problems() + image_problems(given, "--image")
           + writable(("--visualize", visualize)))
    from reid.engine.galleries import image_samples
    from reid.index.backends import open_store
    from reid.retrieval import RankList
    from reid.visualize import draw_rank_lists

    gallery = open_store(index).current()
    embedder = load_embedder(model, run, batches)
    gallery.check_model(embedder.backbone, embedder.num_features, embedder.digest)
    queries = image_samples(given, value_of(query_modality))
    excluded = tuple(exclude_camera) if exclude_camera else None
    results = gallery.search(embedder.embeddings(queries), top_k, modality=value_of(modality),
                             exclude_camids=None if excluded is None else [excluded] * len(queries),
                             camids=cameras, since=since, until=until, pid=pid)
    if not any(results):
        filters = [f"modality {value_of(modality)}" if modality else "", f"cameras {cameras}" if cameras else "",
                   f"not cameras {list(excluded)}" if excluded else "", f"identity {pid}" if pid is not None else "",
                   "a time range" if since is not None or until is not None else ""]
        note(f"no gallery item passes the filters ({', '.join(f for f in filters if f)}); the gallery holds "
             f"{gallery.counts_by_modality()}")
    for query, hits in zip(queries, results, strict=True):
        if as_json:
            for hit in hits:
                typer.echo(json.dumps({"query": query.path, "rank": hit.rank, "score": round(hit.score, 6),
                                       "path": hit.path, "pid": hit.pid, "camid": hit.camid,
                                       "modality": hit.modality, "item_id": hit.item_id}))
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


@command(app, "migrate")
def index_migrate_command(
        source: Annotated[str, typer.Option("--from", metavar="GALLERY", help="The gallery to copy")],
        target: Annotated[str, typer.Option("--to", metavar="GALLERY", help="Where the copy goes (a directory, or a "
                                                                           "Milvus address)")],
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a gallery the target holds")] = False,
) -> None:
    """Copy a gallery from FAISS to Milvus or back (or between two of either), with its manifest and every item's
    metadata, and check the copy item by item."""
    from reid.index.store import replace_problems

    problems = gallery_problems(source, "--from")
    problems += gallery_problems(target, "--to") if _is_milvus(target) else \
        [problem.replace("--out", "--to") for problem in replace_problems(target, overwrite)]
    refuse(problems)
    from reid.index.migrate import migrate

    with console.status(f"copying {source} to {target}"):
        copied = migrate(source, target, overwrite)
    console.print(f"copied {copied} items from {source} to {target}; every item checked (metadata equal, "
                  f"embeddings within 1e-6)")
