"""What ``reid serve`` answers from: one model, one gallery, and the evaluation reports it shows.

The gallery is a FAISS directory or a Milvus collection (``reid.index.backends``). A FAISS gallery may change
under the server (``reid index add / remove / compact`` from another process, or the server's own writes): every
request looks at the gallery directory first (one ``stat``; a save swaps in a new directory) and reloads it when
it changed; a load reads one complete version, whatever a writer does meanwhile (``reid.index.store``), and writes
go through the gallery's lock exactly as ``reid index add / remove`` do. A Milvus gallery is not held here at all:
every request asks the database, so several servers answer from one gallery.

Uploaded images that are added to the gallery are kept in an uploads folder (by default ``<gallery>.uploads``
beside a gallery directory or a Milvus Lite file; a server's gallery needs ``--uploads`` on storage its servers
share), named by their content's digest, because a gallery item is a file.

Errors: a request the service refuses is a ``RequestError`` (a 4xx); anything else that goes wrong here (a gallery
file that vanished, a corrupt gallery, a model that fails) is the server's fault (a 5xx, ``reid.serve.errors``).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
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
from reid.index.backends import open_store
from reid.index.milvus import MilvusGallery
from reid.io import atomic_write, regular_file
from reid.visualize import TILE

IMAGE_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}
MAX_ID = 2 ** 63 - 1  # ids, identities and cameras are 64-bit integers
FULL_SIZE = 512  # the longer side of an enlarged image, in pixels


class RequestError(ReidError):
    """A request the service refuses (a 4xx): ``status`` says which."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What a request may be: at most ``max_bytes`` per upload and ``max_pixels`` pixels (decompression bombs are
    refused before they are decoded), ``max_images`` images per request, a top-k of at most ``max_top_k``, and a
    page of at most ``max_page`` items."""

    max_bytes: int = 10 * 2 ** 20
    max_pixels: int = 25_000_000
    max_images: int = 32
    max_top_k: int = 100
    max_page: int = 200

    @property
    def max_body(self) -> int:
        """The largest request body: every upload at its limit, and room for the form's other fields."""
        return self.max_images * self.max_bytes + 2 ** 20


@dataclass
class Query:
    """One search request: its decoded images (or a gallery item's), whether each is infrared, and the filters.

    Attributes:
        exclude_items: Item ids that must not be returned (the query's own item, and with ``exclude_identity``
            its identity's other items on its side).
    """

    images: list[np.ndarray]
    infrared: list[bool]
    names: list[str]
    top_k: int = 10
    modality: str | None = None
    cameras: tuple[int, ...] | None = None
    exclude_cameras: tuple[int, ...] | None = None
    min_score: float | None = None
    pids: list[int | None] = field(default_factory=list)  # known identities (a gallery item's), else None
    exclude_items: frozenset[int] = frozenset()
    since: int | None = None  # only items seen in this time range (seconds since 1970 UTC)
    until: int | None = None
    pid: int | None = None  # only the items of this identity

    def group(self) -> tuple:
        """Queries with the same filters are searched together."""
        return self.modality, self.cameras, self.exclude_cameras, self.since, self.until, self.pid


def shown(score: float) -> float:
    """A score as answers show it (5 decimals); a threshold compares this, so a hit scored exactly as a shown score
    passes that score as a threshold."""
    return round(float(score), 5)


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
        limits: What requests may be.
    """

    def __init__(self, embedder: Embedder, gallery: str | Path, uploads: str | Path | None = None,
                 evaluations: Sequence[str | Path] = (), limits: Limits | None = None) -> None:
        self.embedder = embedder
        self.store = open_store(gallery)
        self.uploads = Path(uploads) if uploads else default_uploads(self.store)
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        gallery_now = self.gallery()
        gallery_now.check_model(embedder.backbone, embedder.num_features, embedder.digest)
        self.evaluations: dict[str, Evaluation] = {}
        for path in evaluations:
            evaluation = load_evaluation(Path(path), gallery_now)
            name, number = evaluation.name, 1
            while name in self.evaluations:  # two reports of the same file name
                number += 1
                name = f"{evaluation.name}-{number}"
            self.evaluations[name] = evaluation.named(name)

    # the gallery, as it is now --------------------------------------------------------------------------------
    def current(self) -> tuple[Gallery | MilvusGallery, int]:
        """The gallery as it is now (a FAISS one reloaded when a save has swapped in a new directory), and which
        version it is (the manifest's, which changes at every save and never repeats)."""
        with self._lock:
            gallery = self.store.current()
        return gallery, gallery.manifest.version

    def gallery(self) -> Gallery | MilvusGallery:
        return self.current()[0]

    def info(self) -> dict:
        gallery, version = self.current()
        cameras = gallery.cameras()
        return {"backend": self.store.backend, "items": gallery.live_count,
                "embedding_size": gallery.manifest.embedding_size,
                "backbone": gallery.manifest.backbone, "checkpoint_digest": gallery.manifest.checkpoint_digest,
                "index_type": gallery.settings.type, "factory": gallery.manifest.factory,
                "by_modality": gallery.counts_by_modality(), "cameras": cameras,
                "unknown_camera_items": gallery.unknown_camera_count(), "version": version,
                "evaluations": [e.info() for e in self.evaluations.values()]}

    # searching ------------------------------------------------------------------------------------------------
    def item_query(self, item_id: int, top_k: int, modality: str | None = None,
                   cameras: tuple[int, ...] | None = None, exclude_cameras: tuple[int, ...] | None = None,
                   min_score: float | None = None, exclude_identity: bool = False) -> Query:
        """A query made of a gallery item's own image (the page's "search with this result"). The item itself is
        never among its results; with ``exclude_identity``, neither are its identity's other items of its
        modality (to look for the identity elsewhere, e.g. on the other side)."""
        gallery = self.gallery()
        row = self._row(gallery, item_id)
        excluded = {item_id}
        if exclude_identity and row["pid"] is not None:
            excluded |= set(gallery.ids_of(pid=row["pid"], modality=row["modality"]))
        image = load_image(_frame(row["path"]))
        return Query([image], [row["modality"] == "ir"], [f"item {item_id}"], top_k, modality, cameras,
                     exclude_cameras, min_score, [row["pid"]], frozenset(excluded))

    def check_cameras(self, cameras: Sequence[int] | None, exclude_cameras: Sequence[int] | None) -> None:
        """Every named camera is one of the gallery's (a 422 names the first that is not)."""
        known = set(self.gallery().cameras())
        for camera in list(cameras or []) + list(exclude_cameras or []):
            if camera not in known:
                raise RequestError(f"camera {camera} is not in the gallery (its cameras: "
                                   f"{', '.join(map(str, sorted(known))) or 'none known'})", 422)

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
            groups.setdefault(query.group(), []).append(number)
        for (modality, cameras, exclude_cameras, since, until, pid), members in groups.items():
            wanted = [row for number in members for row in rows[number]]
            # an excluded item can take a place only once: asking for that many more keeps the top-k exact
            top_k = max(queries[number].top_k + len(queries[number].exclude_items) for number in members)
            hits = gallery.search(vectors[wanted], top_k, modality=modality, camids=cameras,
                                  exclude_camids=[exclude_cameras] * len(wanted), since=since, until=until, pid=pid)
            found = iter(hits)
            for number in members:
                query = queries[number]
                answers = []
                for _ in query.images:
                    kept = [hit for hit in next(found) if hit.item_id not in query.exclude_items
                            and (query.min_score is None or shown(hit.score) >= query.min_score)][:query.top_k]
                    answers.append([self._hit(hit, rank) for rank, hit in enumerate(kept, 1)])
                results[number] = {"version": version, "hits": answers}
        return results

    def _hit(self, hit, rank: int) -> dict:
        return {"item_id": hit.item_id, "rank": rank, "score": shown(hit.score), "pid": hit.pid,
                "camid": hit.camid, "modality": hit.modality, "label": hit.label, **_urls(hit.item_id, hit.path)}

    # browsing -------------------------------------------------------------------------------------------------
    def items(self, offset: int, limit: int, modality: str | None = None, camera: int | None = None,
              pid: int | None = None) -> dict:
        """A page of live items (in the order they were added), with the filters."""
        if limit > self.limits.max_page:
            raise RequestError(f"limit {limit} is more than the {self.limits.max_page} items a page may hold", 422)
        gallery, version = self.current()
        total, rows = gallery.page(offset, limit, modality=modality, camera=camera, pid=pid)
        return {"total": total, "offset": offset, "limit": limit, "version": version,
                "items": [{"item_id": row["id"], "pid": row["pid"], "camid": row["camid"],
                           "modality": row["modality"], "label": row["label"], **_urls(row["id"], row["path"])}
                          for row in rows]}

    # writing --------------------------------------------------------------------------------------------------
    def add(self, uploads: Sequence[tuple[bytes, str]], pid: int | None, camid: int | None,
            modality: str | None, timestamp: int | None = None) -> dict:
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
        with self.store.updating() as gallery:
            ids = gallery.add(vectors, [sample_metadata(s, "uploaded", timestamp) for s in samples])
        return {"added": len(ids), "item_ids": ids, "items": gallery.live_count}

    def remove(self, item_id: int) -> dict:
        with self.store.updating() as gallery:
            self._row(gallery, item_id)
            removed, _ = gallery.remove_ids([item_id])
        return {"removed": removed, "items": gallery.live_count}

    # pictures -------------------------------------------------------------------------------------------------
    def item_thumbnail(self, item_id: int) -> bytes:
        return thumbnail(_frame(self._row(self.gallery(), item_id)["path"]))

    def item_image(self, item_id: int) -> bytes:
        return thumbnail(_frame(self._row(self.gallery(), item_id)["path"]), full=True)

    def evaluation_thumbnail(self, name: str, direction: str, query: int, rank: int) -> bytes:
        """The query's image (rank 0), its rank-th result, or its first true match (at its rank) of an evaluation
        report; the path comes from the report, never from the request."""
        record = self.evaluation(name).record(direction, query)
        first = record.get("first_match_item")
        if rank == 0:
            return thumbnail(record["query"])
        if 1 <= rank <= len(record["top"]):
            return thumbnail(record["top"][rank - 1]["path"])
        if first is not None and rank == first["rank"]:
            return thumbnail(first["path"])
        shown = f"0 (the query) to {len(record['top'])}" + (f", or {first['rank']}" if first else "")
        raise RequestError(f"rank must be {shown}, got {rank}", 404)

    # evaluations ----------------------------------------------------------------------------------------------
    def evaluation(self, name: str) -> Evaluation:
        if name not in self.evaluations:
            shown = ", ".join(self.evaluations) or "none"
            raise RequestError(f"no evaluation {name!r} (the server shows: {shown})", 404)
        return self.evaluations[name]

    @staticmethod
    def _row(gallery: Gallery | MilvusGallery, item_id: int) -> dict:
        """A live item's row; an id never given is a 404, the id of an item since removed a 409 (ids are never
        given again, so a client's stale id can never name another item; a Milvus gallery does not say which ids
        it gave, so there an unknown id is a 404)."""
        row = gallery.item(item_id)
        if row is not None:
            return row
        if 0 <= item_id < (gallery.manifest.next_item_id or 0):
            raise RequestError(f"item {item_id} was removed from the gallery (search again for the items it holds "
                               f"now)", 409)
        raise RequestError(f"no item {item_id} in the gallery", 404)


def default_uploads(store) -> Path:
    """Where added uploads go unless --uploads says: beside the gallery directory, or beside a Milvus Lite file (a
    Milvus server's gallery has no folder of its own: its servers need --uploads on storage they share)."""
    if store.backend == "faiss":
        return store.path.with_name(store.path.name + ".uploads")
    if store.address.lite:
        return Path(f"{store.address.uri}.uploads") / store.address.collection
    return Path("reid-uploads") / store.address.collection


def _frame(path: str | list[str]) -> str:
    """An item's image: itself, or a tracklet's middle frame."""
    return path[len(path) // 2] if isinstance(path, list) else path


def _urls(item_id: int, path: str | list[str]) -> dict:
    return {"file": os.path.basename(_frame(path)), "thumbnail": f"/api/v1/items/{item_id}/thumbnail",
            "image": f"/api/v1/items/{item_id}/image"}


def thumbnail(path: str, full: bool = False) -> bytes:
    """A JPEG of an image file: the size of the rank-list pictures' tiles, or (``full``) the image enlarged or shrunk to
    a longer side of FULL_SIZE pixels (re-ID crops are small: 64 pixels wide would be no enlargement at all)."""
    image = Image.fromarray(load_image(path))
    if full:
        scale = FULL_SIZE / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    else:
        image = image.resize((TILE[1], TILE[0]), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass(frozen=True)
class Evaluation:
    """An evaluation report with its per-query records (``reid evaluate --output``), addressed by its name."""

    name: str
    dataset: str
    queries: dict[str, list[dict]]
    results: dict[str, dict]
    trial: int = 0
    warnings: tuple[str, ...] = ()

    def named(self, name: str) -> Evaluation:
        return Evaluation(name, self.dataset, self.queries, self.results, self.trial, self.warnings)

    def info(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "directions": list(self.queries), "trial": self.trial,
                "warnings": list(self.warnings)}

    def records(self, direction: str) -> list[dict]:
        if direction not in self.queries:
            raise RequestError(f"evaluation {self.name!r} has no {direction!r} search ({', '.join(self.queries)})",
                               404)
        return self.queries[direction]

    def record(self, direction: str, query: int) -> dict:
        records = self.records(direction)
        if not 0 <= query < len(records):
            raise RequestError(f"evaluation {self.name!r} has {len(records)} {direction} queries, not {query + 1}",
                               404)
        return records[query]

    def view(self, direction: str) -> dict:
        """The direction's summary and its queries, worst first (lowest AP; a query without a true match last)."""
        records = self.records(direction)
        order = sorted(range(len(records)), key=lambda q: (math.inf if records[q]["ap"] is None else
                                                           records[q]["ap"], q))
        summary = {key: self.results.get(direction, {}).get(key, math.nan)
                   for key in ("rank1", "rank5", "rank10", "mAP", "mINP")}
        return {"name": self.name, "dataset": self.dataset, "direction": direction, "trial": self.trial,
                "summary": summary, "warnings": list(self.warnings), "queries": [
                    {"query": q, "ap": records[q]["ap"], "first_match": records[q]["first_match"],
                     "first_match_item": _evaluated(records[q].get("first_match_item"), records[q]["pid"]),
                     "pid": records[q]["pid"], "camid": records[q]["camid"],
                     "top": [{"rank": k, "pid": item["pid"], "camid": item["camid"], "match": item["match"],
                              "score": item["score"]} for k, item in enumerate(records[q]["top"], 1)]}
                    for q in order]}


def _evaluated(item: dict | None, pid: int) -> dict | None:
    if item is None:
        return None
    return {"rank": item["rank"], "pid": item["pid"], "camid": item["camid"], "match": item["pid"] == pid,
            "score": item["score"]}


def load_evaluation(path: Path, gallery: Gallery | None = None) -> Evaluation:
    """Read a report; one that has no per-query records (written before they were) is a ReidError saying how to
    get them. ``warnings`` say why it may not describe ``gallery``: another model, or another dataset."""
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ReidError(f"--evaluation {path}: not a readable report ({reason})") from None
    if not isinstance(report, dict) or not isinstance(report.get("queries"), dict) or not report["queries"]:
        raise ReidError(f"--evaluation {path}: no per-query records; write the report again with "
                        f"reid evaluate ... --output {path}")
    warnings = []
    dataset = str(report.get("dataset", "?"))
    if gallery is not None:
        digest = (report.get("model") or {}).get("digest")
        if digest != gallery.manifest.checkpoint_digest:
            warnings.append(f"{path.name} evaluated another model (checkpoint {(digest or 'none')[:12]}) than the "
                            f"gallery's ({(gallery.manifest.checkpoint_digest or 'none')[:12]})")
        source = gallery.manifest.extra.get("dataset")
        if source is not None and source != dataset:
            warnings.append(f"{path.name} evaluated {dataset}, the gallery holds {source}")
    results = report.get("results") if isinstance(report.get("results"), dict) else {}
    return Evaluation(path.name, dataset, report["queries"], results, int(report.get("queries_trial", 0)),
                      tuple(warnings))
