"""What ``reid serve`` answers from: one model and one gallery, loaded once, and the evaluations it shows.

The gallery on disk may change under the server (``reid index add / remove / compact`` from another process, or the
server's own writes): every request looks at the gallery directory first (one ``stat``; a save swaps in a new
directory) and reloads it when it changed. A load reads one complete version of the gallery, whatever a writer does
meanwhile (``reid.index.store``). Writes go through the gallery's lock exactly as ``reid index add / remove`` do.

Uploaded images that are added to the gallery are kept in an uploads folder (by default ``<gallery>.uploads``
beside it), named by their content's digest, because a gallery item is a file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from reid.data.images import load_image, to_rgb_array
from reid.engine.galleries import image_modality, sample_metadata
from reid.engine.inference import Embedder
from reid.errors import ReidError
from reid.index import Gallery
from reid.index.store import gallery_path
from reid.io import atomic_write, regular_file
from reid.visualize import TILE

IMAGE_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}


class RequestError(ReidError):
    """A request the service refuses (a 4xx): ``status`` says which."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What an upload may be: at most ``max_bytes`` bytes and ``max_pixels`` pixels (decompression bombs are
    refused before they are decoded), ``max_images`` images per request and a top-k of at most ``max_top_k``."""

    max_bytes: int = 10 * 2 ** 20
    max_pixels: int = 25_000_000
    max_images: int = 32
    max_top_k: int = 100


@dataclass
class Query:
    """One search request: its decoded images (or a gallery item's), whether each is infrared, and the filters."""

    images: list[np.ndarray]
    infrared: list[bool]
    names: list[str]
    top_k: int = 10
    modality: str | None = None
    cameras: tuple[int, ...] | None = None
    pids: list[int | None] = field(default_factory=list)  # known identities (a gallery item's), else None


def decode_upload(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """An uploaded file as a (H, W, 3) uint8 image; a RequestError (413 for too large, 400 otherwise) names it."""
    if len(data) > limits.max_bytes:
        raise RequestError(f"{name}: {len(data):,} bytes is more than the {limits.max_bytes:,} an upload may be", 413)
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
            if width * height <= limits.max_pixels:
                return to_rgb_array(image)
    except Image.DecompressionBombError:
        raise RequestError(f"{name}: more than the {limits.max_pixels:,} pixels an upload may have", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise RequestError(f"{name}: not an image (JPEG, PNG or BMP)") from None
    raise RequestError(f"{name}: {width}x{height} is more than the {limits.max_pixels:,} pixels an upload may have",
                       413)


class GalleryService:
    """The model, the gallery and the evaluations a server answers from.

    Args:
        embedder: The model (it must be the gallery's: checked at start).
        gallery: The gallery directory.
        uploads: Where added uploads are kept (default: ``<gallery>.uploads`` beside it).
        evaluations: ``reid evaluate --output`` reports to show, with their per-query records.
        limits: What uploads may be.
    """

    def __init__(self, embedder: Embedder, gallery: str | Path, uploads: str | Path | None = None,
                 evaluations: Sequence[str | Path] = (), limits: Limits | None = None) -> None:
        self.embedder = embedder
        self.path = gallery_path(gallery)
        self.uploads = Path(uploads) if uploads else self.path.with_name(self.path.name + ".uploads")
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._gallery: Gallery | None = None
        self._version: tuple[int, int] | None = None
        gallery_now = self.gallery()
        gallery_now.check_model(embedder.backbone, embedder.num_features, embedder.digest)
        self.evaluations = [load_evaluation(Path(path)) for path in evaluations]

    # the gallery, as it is on disk now ------------------------------------------------------------------------
    def _stat(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_ctime_ns

    def current(self) -> tuple[Gallery, int]:
        """The gallery as it is on disk now (reloaded when a save has swapped in a new directory), and which version
        it is (the manifest's, which changes at every save and never repeats)."""
        with self._lock:
            status = self._stat()
            if self._gallery is None or status != self._version:
                self._gallery, self._version = Gallery.load(self.path), status
            return self._gallery, self._gallery.manifest.version

    def gallery(self) -> Gallery:
        return self.current()[0]

    def cameras(self, gallery: Gallery | None = None) -> list[int]:
        """The known cameras of the gallery's live items."""
        table = (gallery or self.gallery()).table
        return sorted({int(c) for c in table.camids[~table.removed] if c >= 0})

    def info(self) -> dict:
        gallery, version = self.current()
        cameras = self.cameras(gallery)
        return {"items": gallery.live_count, "embedding_size": gallery.manifest.embedding_size,
                "backbone": gallery.manifest.backbone, "checkpoint_digest": gallery.manifest.checkpoint_digest,
                "index_type": gallery.settings.type, "factory": gallery.manifest.factory,
                "by_modality": gallery.counts_by_modality(), "cameras": cameras, "version": version,
                "evaluations": [{"name": e.name, "dataset": e.dataset, "directions": list(e.queries)}
                                for e in self.evaluations]}

    # searching ------------------------------------------------------------------------------------------------
    def item_query(self, item_id: int, top_k: int, modality: str | None, cameras: tuple[int, ...] | None) -> Query:
        """A query made of a gallery item's own image (the page's "search with this result")."""
        gallery = self.gallery()
        row = self._row(gallery, item_id)
        image = load_image(_frame(row["path"]))
        return Query([image], [row["modality"] == "ir"], [f"item {item_id}"], top_k, modality, cameras,
                     [row["pid"]])

    def search(self, queries: Sequence[Query]) -> list[dict]:
        """Per query, the version of the gallery that answered and the hits of each of its images: the images of
        all queries embedded in one forward pass, the queries with the same filters searched together (what the
        micro-batcher calls)."""
        images = [image for query in queries for image in query.images]
        infrared = [flag for query in queries for flag in query.infrared]
        vectors = self.embedder.embed_images(images, infrared)
        gallery, version = self.current()
        rows, start = [], 0
        for query in queries:
            rows.append(list(range(start, start + len(query.images))))
            start += len(query.images)
        results: list[dict | None] = [None] * len(queries)
        groups: dict[tuple, list[int]] = {}
        for number, query in enumerate(queries):
            groups.setdefault((query.modality, query.cameras), []).append(number)
        for (modality, cameras), members in groups.items():
            wanted = [row for number in members for row in rows[number]]
            top_k = max(queries[number].top_k for number in members)
            hits = gallery.search(vectors[wanted], top_k, modality=modality, camids=cameras)
            found = iter(hits)
            for number in members:
                results[number] = {"version": version,
                                   "hits": [[self._hit(hit) for hit in next(found)[:queries[number].top_k]]
                                            for _ in queries[number].images]}
        return results

    def _hit(self, hit) -> dict:
        return {"item_id": hit.item_id, "score": round(hit.score, 5), "pid": hit.pid, "camid": hit.camid,
                "modality": hit.modality, "label": hit.label, "thumbnail": f"/api/v1/items/{hit.item_id}/thumbnail"}

    # writing --------------------------------------------------------------------------------------------------
    def add(self, uploads: Sequence[tuple[bytes, str]], pid: int | None, camid: int | None,
            modality: str | None) -> dict:
        """Keep uploaded images in the uploads folder and add them to the gallery under its lock, as
        ``reid index add`` does; images already there (by content) are not added twice."""
        from reid.data.samples import Sample

        images, samples = [], []
        for data, name in uploads:
            image = decode_upload(data, name, self.limits)
            with Image.open(io.BytesIO(data)) as opened:
                suffix = IMAGE_SUFFIXES.get(opened.format or "", ".png")
            path = self.uploads / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
            if not regular_file(path):
                atomic_write(path, lambda temporary, data=data: temporary.write_bytes(data))
            kind = modality or image_modality(image)
            images.append(image)
            samples.append(Sample(str(path), -1 if pid is None else pid, -1 if camid is None else camid, kind))
        vectors = self.embedder.embed_images(images, [s.modality == "ir" for s in samples])
        with Gallery.updating(self.path) as gallery:
            before = len(gallery.table)
            added = gallery.add(vectors, [sample_metadata(s, "uploaded") for s in samples])
            ids = [int(i) for i in gallery.table.ids[before:]]
        return {"added": added, "item_ids": ids, "items": gallery.live_count}

    def remove(self, item_id: int) -> dict:
        with Gallery.updating(self.path) as gallery:
            self._row(gallery, item_id)
            removed, _ = gallery.remove_ids([item_id])
        return {"removed": removed, "items": gallery.live_count}

    # pictures -------------------------------------------------------------------------------------------------
    def item_thumbnail(self, item_id: int) -> bytes:
        return thumbnail(_frame(self._row(self.gallery(), item_id)["path"]))

    def evaluation_thumbnail(self, evaluation: int, direction: str, query: int, rank: int) -> bytes:
        """The query's image (rank 0) or its rank-th result, of an evaluation report; the path comes from the
        report, never from the request."""
        record = self.evaluation_record(evaluation, direction, query)
        if not 0 <= rank <= len(record["top"]):
            raise RequestError(f"rank must be 0 (the query) to {len(record['top'])}, got {rank}", 404)
        return thumbnail(record["query"] if rank == 0 else record["top"][rank - 1]["path"])

    def evaluation_queries(self, evaluation: int, direction: str) -> list[dict]:
        """An evaluation's per-query records of one direction (a 404 RequestError names what does not exist)."""
        if not 0 <= evaluation < len(self.evaluations):
            raise RequestError(f"no evaluation {evaluation} (the server shows {len(self.evaluations)})", 404)
        queries = self.evaluations[evaluation].queries
        if direction not in queries:
            raise RequestError(f"evaluation {evaluation} has no {direction!r} search ({', '.join(queries)})", 404)
        return queries[direction]

    def evaluation_record(self, evaluation: int, direction: str, query: int) -> dict:
        records = self.evaluation_queries(evaluation, direction)
        if not 0 <= query < len(records):
            raise RequestError(f"evaluation {evaluation} has {len(records)} {direction} queries, not {query + 1}",
                               404)
        return records[query]

    @staticmethod
    def _row(gallery: Gallery, item_id: int) -> dict:
        """A live item's row; an id never given is a 404, the id of an item since removed a 409 (ids are never
        given again, so a client's stale id can never name another item)."""
        row = gallery.item(item_id)
        if row is not None:
            return row
        if 0 <= item_id < (gallery.manifest.next_item_id or 0):
            raise RequestError(f"item {item_id} was removed from the gallery (search again for the items it holds "
                               f"now)", 409)
        raise RequestError(f"no item {item_id} in the gallery", 404)


def _frame(path: str | list[str], first: bool = False) -> str:
    """An item's image: itself, or a tracklet's middle frame (its first, to name the item)."""
    if isinstance(path, list):
        return path[0] if first else path[len(path) // 2]
    return path


def thumbnail(path: str) -> bytes:
    """A JPEG thumbnail of an image file, the size of the rank-list pictures' tiles."""
    image = Image.fromarray(load_image(path)).resize((TILE[1], TILE[0]), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass(frozen=True)
class Evaluation:
    """An evaluation report with its per-query records (``reid evaluate --output``), worst queries first."""

    name: str
    dataset: str
    queries: dict[str, list[dict]]


def load_evaluation(path: Path) -> Evaluation:
    """Read a report; one that has no per-query records (written before they were) is a ReidError saying how to
    get them."""
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReidError(f"--evaluation {path}: not a readable report ({error})") from None
    if not isinstance(report, dict) or not isinstance(report.get("queries"), dict) or not report["queries"]:
        raise ReidError(f"--evaluation {path}: no per-query records; write the report again with "
                        f"reid evaluate ... --output {path}")
    return Evaluation(path.name, str(report.get("dataset", "?")), report["queries"])
