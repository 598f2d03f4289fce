"""Galleries in Milvus (pymilvus, the optional extra ``[milvus]``): the same gallery, held by a vector database that
several processes and machines share.

A gallery address ``milvus://HOST:PORT/COLLECTION`` names a collection on a Milvus server or cluster (``milvus+https
://`` for TLS; a token, when the server wants one, from ``REID_MILVUS_TOKEN``); ``milvus:PATH.db/COLLECTION`` runs
Milvus Lite embedded on a local file (one process at a time: Milvus Lite locks its file; several processes share a
Lite file through its server, ``python -m milvus_lite server --data-dir PATH.db --port P``, and
``milvus://127.0.0.1:P/COLLECTION``).

The collection holds one row per item: its own id (Milvus's, never given again), the L2-normalised embedding
(searched by inner product), and the metadata the FAISS backend keeps (path, identity, camera, modality, label,
timestamp; unknown numbers as -1, an unknown modality as ""). The gallery's manifest (backbone, checkpoint digest,
embedding size, preprocessing, index settings, version) is a row of the ``reid_manifests`` collection in the same
database, checked before every add and search exactly as a FAISS gallery's manifest is. Filters (modality, cameras
in and not in, identity, a time range) become Milvus expressions, so the server applies them before it ranks; an
item of unknown camera follows the FAISS backend's rule (``MetadataTable.allowed``). Nothing is held between
requests: every call asks the database, so any number of processes answer from one gallery.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid.data.samples import UNKNOWN
from reid.errors import require
from reid.index.factory import normalised
from reid.index.gallery import SearchHit
from reid.index.metadata import MetadataTable, path_key
from reid.index.settings import GalleryError, IndexSettings
from reid.index.store import Manifest

MANIFESTS = "reid_manifests"
TOKEN_VARIABLE = "REID_MILVUS_TOKEN"
# Milvus's index for each type a gallery may have here (ivfpq is FAISS's own: Milvus Lite has no IVF_PQ)
MILVUS_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivfflat": "IVF_FLAT"}
PATH_BYTES, LABEL_BYTES = 4096, 1024
BATCH = 1000  # rows per insert or query expression
SEARCH_LIMIT = 16_384  # Milvus returns at most this many hits per query (its topk limit)


def is_milvus(address: str | os.PathLike) -> bool:
    return str(address).startswith(("milvus:", "milvus+https:"))


@dataclass(frozen=True)
class Address:
    """Where a Milvus gallery is: the URI pymilvus connects to and the collection."""

    uri: str
    collection: str
    lite: bool

    @classmethod
    def parse(cls, address: str) -> Address:
        """``milvus://HOST:PORT/COLLECTION``, ``milvus+https://HOST:PORT/COLLECTION`` or ``milvus:PATH.db/COLLECTION``
        (a GalleryError says what a wrong one lacks)."""
        text = str(address)
        server = re.fullmatch(r"milvus(\+https)?://([^/]+)/([A-Za-z_][A-Za-z0-9_]*)", text)
        if server:
            scheme = "https" if server.group(1) else "http"
            return cls(f"{scheme}://{server.group(2)}", server.group(3), False)
        lite = re.fullmatch(r"milvus:(?!//)(.+\.db)/([A-Za-z_][A-Za-z0-9_]*)", text)
        if lite:
            return cls(os.path.abspath(lite.group(1)), lite.group(2), True)
        raise GalleryError(f"{text}: not a Milvus gallery address (milvus://HOST:PORT/COLLECTION, or "
                           f"milvus:FILE.db/COLLECTION for Milvus Lite; a collection name is letters, digits and _)")

    def __str__(self) -> str:
        return f"milvus:{self.uri}/{self.collection}" if self.lite else \
            f"milvus{'+https' if self.uri.startswith('https') else ''}://{self.uri.split('://', 1)[1]}/" \
            f"{self.collection}"


_CLIENTS: dict[str, Any] = {}  # one client per URI and process (Milvus Lite allows one per file)


def client_for(address: Address):
    """The pymilvus client of an address (made once per process); a GalleryError when it cannot connect."""
    require("pymilvus", "milvus", "a Milvus gallery")
    if address.uri not in _CLIENTS:
        import logging

        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        try:
            if address.lite:
                require("milvus_lite", "milvus", "a Milvus Lite gallery (a .db file)")
                os.makedirs(os.path.dirname(address.uri) or ".", exist_ok=True)
            # its paging iterator logs a warning each time Milvus Lite lacks a server timestamp it does without
            logging.getLogger("pymilvus").setLevel(logging.ERROR)
            _CLIENTS[address.uri] = MilvusClient(address.uri, token=os.environ.get(TOKEN_VARIABLE, ""))
        except (MilvusException, OSError) as error:
            reason = getattr(error, "message", None) or str(error)
            hint = " (Milvus Lite: one process per file; share it through python -m milvus_lite server)" \
                if address.lite else ""
            raise GalleryError(f"{address}: cannot connect ({reason.splitlines()[0][:200]}){hint}") from None
    return _CLIENTS[address.uri]


def _string(text: str) -> str:
    return json.dumps(text)  # a quoted string literal of Milvus's filter expressions (the same escapes as JSON)


def _ids(values: Iterable[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


class MilvusGallery:
    """A gallery in a Milvus collection; the read and write operations of ``reid.index.Gallery``.

    Args:
        address: Where it is.
        manifest: Its manifest (as read from ``reid_manifests``).
    """

    def __init__(self, address: Address, manifest: Manifest) -> None:
        self.address, self.manifest = address, manifest
        self.client = client_for(address)
        self.settings = manifest.index

    # opening and building -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, address: str | Address) -> MilvusGallery:
        """The gallery at ``address``; a GalleryError when there is none, or its manifest is broken."""
        address = address if isinstance(address, Address) else Address.parse(address)
        client = client_for(address)
        manifest = _read_manifest(client, address)
        if manifest is None or not client.has_collection(address.collection):
            raise GalleryError(f"{address}: not a gallery (no collection {address.collection!r} made by reid index "
                               f"build)")
        client.load_collection(address.collection)
        return cls(address, manifest)

    @classmethod
    def exists(cls, address: str | Address) -> bool:
        address = address if isinstance(address, Address) else Address.parse(address)
        client = client_for(address)
        return client.has_collection(address.collection) or _read_manifest(client, address) is not None

    @classmethod
    def build(cls, address: str | Address, embeddings: np.ndarray, metadata: Sequence[dict[str, Any]], backbone: str,
              settings: IndexSettings | None = None, checkpoint_digest: str | None = None,
              source: dict[str, Any] | None = None, overwrite: bool = False) -> MilvusGallery:
        """A new collection over ``embeddings`` (one metadata row each), replacing one only with ``overwrite``."""
        from pymilvus import DataType

        address = address if isinstance(address, Address) else Address.parse(address)
        vectors = normalised(embeddings)
        if len(vectors) == 0:
            raise GalleryError("cannot build a gallery from zero embeddings")
        if len(vectors) != len(metadata):
            raise GalleryError(f"{len(vectors)} embeddings but {len(metadata)} metadata rows")
        settings = (settings or IndexSettings()).resolved(len(vectors), vectors.shape[1])
        if settings.type not in MILVUS_TYPES:
            raise GalleryError(f"--type {settings.type}: a FAISS type; a Milvus gallery takes "
                               f"{', '.join(MILVUS_TYPES)}")
        client = client_for(address)
        if cls.exists(address):
            if not overwrite:
                raise GalleryError(f"{address}: already holds a gallery; add to it with reid index add, or replace "
                                   f"it with --overwrite")
            client.drop_collection(address.collection)
        schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        schema.add_field("path", DataType.VARCHAR, max_length=PATH_BYTES)
        schema.add_field("key", DataType.VARCHAR, max_length=PATH_BYTES)
        for name in ("pid", "camid", "timestamp"):
            schema.add_field(name, DataType.INT64)
        schema.add_field("modality", DataType.VARCHAR, max_length=8)
        schema.add_field("label", DataType.VARCHAR, max_length=LABEL_BYTES)
        index = client.prepare_index_params()
        index.add_index("vector", index_type=MILVUS_TYPES[settings.type], metric_type="IP",
                        params=_build_parameters(settings))
        client.create_collection(address.collection, schema=schema, index_params=index)
        manifest = Manifest(backbone=backbone, embedding_size=vectors.shape[1], index=settings.model_dump(),
                            factory=f"milvus:{MILVUS_TYPES[settings.type]}", checkpoint_digest=checkpoint_digest,
                            next_item_id=None, extra=dict(source or {}))
        gallery = cls(address, manifest)
        gallery._insert(vectors, MetadataTable.from_rows(metadata))
        gallery._save_manifest()
        client.load_collection(address.collection)
        return gallery

    # the manifest ---------------------------------------------------------------------------------------------
    def _save_manifest(self) -> None:
        """Write the manifest with a version that changes at every write and never repeats, and the item count."""
        self.manifest.version = max(self.manifest.version + 1, time.time_ns())
        self.manifest.items = self.live_count
        _write_manifest(self.client, self.address, self.manifest)

    def check_model(self, backbone: str, embedding_size: int, checkpoint_digest: str | None) -> None:
        self.manifest.check_model(backbone, embedding_size, checkpoint_digest)

    # counts ---------------------------------------------------------------------------------------------------
    def _count(self, expression: str = "") -> int:
        rows = self.client.query(self.address.collection, filter=expression or "id >= 0",
                                 output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    @property
    def live_count(self) -> int:
        return self._count()

    @property
    def removed_count(self) -> int:
        return 0  # Milvus drops removed items itself

    def counts_by_modality(self) -> dict[str, int]:
        counts = {name: self._count(f"modality == {_string(value)}")
                  for name, value in (("vis", "vis"), ("ir", "ir"), ("unknown", ""))}
        return {name: count for name, count in counts.items() if count}

    def cameras(self) -> list[int]:
        return sorted({int(row["camid"]) for row in self._rows("camid != -1", ["camid"])})

    def unknown_camera_count(self) -> int:
        return self._count(f"camid == {UNKNOWN}")

    # reading items --------------------------------------------------------------------------------------------
    def _rows(self, expression: str, fields: list[str], limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every row that passes ``expression`` (with ``fields``), in pages."""
        iterator = self.client.query_iterator(self.address.collection, batch_size=BATCH, limit=limit or -1,
                                              filter=expression, output_fields=fields)
        try:
            while page := iterator.next():
                yield from page
        finally:
            iterator.close()

    def item(self, item_id: int) -> dict[str, Any] | None:
        if not -2 ** 63 <= int(item_id) < 2 ** 63:
            return None
        rows = self.client.get(self.address.collection, ids=[int(item_id)], output_fields=_FIELDS)
        return _row(rows[0]) if rows else None

    def ids_of(self, pid: int | None = None, modality: str | None = None) -> list[int]:
        return [int(row["id"]) for row in self._rows(_expression(modality, pid=pid) or "id >= 0", ["id"])]

    def page(self, offset: int, limit: int, modality: str | None = None, camera: int | None = None,
             pid: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        expression = _expression(modality, camids=None if camera is None else [camera], pid=pid) or "id >= 0"
        total = self._count(expression)
        rows = self.client.query(self.address.collection, filter=expression, output_fields=_FIELDS,
                                 offset=offset, limit=limit) if offset < total else []
        return total, [_row(row) for row in sorted(rows, key=lambda row: row["id"])]

    # writing --------------------------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, metadata: Sequence[dict[str, Any]]) -> list[int]:
        """Add the items that are not in the gallery yet (by path); returns the new items' ids."""
        vectors = normalised(embeddings)
        if vectors.shape[1] != self.manifest.embedding_size:
            raise GalleryError(f"embeddings of size {vectors.shape[1]} cannot join a gallery of size "
                               f"{self.manifest.embedding_size}")
        if len(vectors) != len(metadata):
            raise GalleryError(f"{len(vectors)} embeddings but {len(metadata)} metadata rows")
        table = MetadataTable.from_rows(metadata)
        keys = [path_key(path) for path in table.paths]
        present = self._present(keys)
        new, seen = [], set(present)
        for row, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                new.append(row)
        ids = self._insert(vectors[new], table.select(np.asarray(new, np.int64))) if new else []
        self._save_manifest()
        return ids

    def _present(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            expression = f"key in [{', '.join(_string(key) for key in chunk)}]"
            found |= {row["key"] for row in self._rows(expression, ["key"])}
        return found

    def _insert(self, vectors: np.ndarray, table: MetadataTable) -> list[int]:
        ids = []
        for start in range(0, len(vectors), BATCH):
            rows = []
            for row in range(start, min(start + BATCH, len(vectors))):
                item = table.row(row)
                path = item["path"]
                rows.append({"vector": vectors[row].tolist(),
                             "path": os.pathsep.join(path) if isinstance(path, list) else path,
                             "key": path_key(path), "pid": _known(item["pid"]), "camid": _known(item["camid"]),
                             "timestamp": _known(item.get("timestamp")), "modality": item["modality"] or "",
                             "label": (item["label"] or "")[:LABEL_BYTES]})
            answer = self.client.insert(self.address.collection, rows)
            ids += [int(i) for i in answer["ids"]]
        return ids

    def remove(self, paths: Iterable[str]) -> tuple[int, list[str]]:
        """Remove the items whose path is in ``paths``; returns how many, and the paths that named none."""
        paths = list(paths)
        keys = {path: path_key(path) for path in paths}
        found: dict[str, list[int]] = {}
        for start in range(0, len(paths), BATCH):
            chunk = list(dict.fromkeys(keys[path] for path in paths[start:start + BATCH]))
            expression = f"key in [{', '.join(_string(key) for key in chunk)}]"
            for row in self._rows(expression, ["id", "key"]):
                found.setdefault(row["key"], []).append(int(row["id"]))
        ids = [item for items in found.values() for item in items]
        if ids:
            self.client.delete(self.address.collection, ids=ids)
            self._save_manifest()
        return len(ids), [path for path in paths if keys[path] not in found]

    def remove_ids(self, ids: Iterable[int]) -> tuple[int, list[int]]:
        ids = [int(i) for i in ids]
        present = {int(row["id"]) for row in self.client.get(self.address.collection, ids=ids, output_fields=["id"])}
        if present:
            self.client.delete(self.address.collection, ids=sorted(present))
            self._save_manifest()
        return len(present), [item for item in ids if item not in present]

    def compact(self) -> MilvusGallery:
        """Milvus merges away removed rows itself; asking it to now (a server may do it later)."""
        self.client.compact(self.address.collection)
        self._save_manifest()
        return self

    def save(self, directory=None) -> str:  # a Milvus gallery is saved as it is written
        return str(self.address)

    # searching ------------------------------------------------------------------------------------------------
    def search(
            self,
            queries: np.ndarray,
            top_k: int = 10,
            modality: str | None = None,
            exclude_camids: Sequence[int | Collection[int] | None] | None = None,
            camids: Collection[int] | None = None,
            since: int | None = None,
            until: int | None = None,
            pid: int | None = None,
    ) -> list[list[SearchHit]]:
        """Top-k items per query, best first, with the filters as Milvus expressions (the server filters before it
        ranks); the arguments are ``reid.index.Gallery.search``'s."""
        from reid.index.gallery import exclusion_groups, query_vectors

        vectors = query_vectors(queries, self.manifest.embedding_size, top_k)
        if top_k > SEARCH_LIMIT:
            raise GalleryError(f"top_k {top_k} is more than the {SEARCH_LIMIT:,} Milvus returns")
        results: list[list[SearchHit]] = [[] for _ in range(len(vectors))]
        for excluded, rows in exclusion_groups(exclude_camids, len(vectors)).items():
            expression = _expression(modality, excluded, camids, pid=pid, since=since, until=until)
            answer = self.client.search(self.address.collection, data=vectors[rows].tolist(), limit=top_k,
                                        filter=expression, output_fields=_FIELDS[1:],
                                        search_params={"metric_type": "IP", "params": _search_parameters(
                                            self.settings, top_k)})
            for query, hits in zip(rows, answer, strict=True):
                results[query] = [_hit(rank, hit) for rank, hit in enumerate(hits, 1)]
        return results


_FIELDS = ["id", "path", "pid", "camid", "modality", "label", "timestamp"]


def _known(value: int | None) -> int:
    return UNKNOWN if value is None else int(value)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """A Milvus row as a metadata row (unknown values None, a tracklet's frames a list)."""
    path = row["path"].split(os.pathsep) if os.pathsep in row["path"] else row["path"]
    return {"id": int(row["id"]), "path": path, "pid": None if row["pid"] == UNKNOWN else int(row["pid"]),
            "camid": None if row["camid"] == UNKNOWN else int(row["camid"]), "modality": row["modality"] or None,
            "label": row["label"] or None, "removed": False,
            "timestamp": None if row.get("timestamp", UNKNOWN) == UNKNOWN else int(row["timestamp"])}


def _hit(rank: int, hit: dict[str, Any]) -> SearchHit:
    entity = hit.get("entity", hit)
    item = _row({"id": hit["id"], **entity})
    return SearchHit(rank, float(hit["distance"]), item["path"], item["pid"], item["camid"], item["modality"],
                     item["label"], item["id"])


def _expression(modality: str | None = None, exclude_camids: Collection[int] | None = None,
                camids: Collection[int] | None = None, pid: int | None = None, since: int | None = None,
                until: int | None = None) -> str:
    """The filters as a Milvus expression: the FAISS backend's rules (``MetadataTable.allowed``), an unknown camera
    (-1) never among "these cameras" and never excluded, an item without a timestamp outside every time range."""
    parts = []
    if modality is not None:
        parts.append(f"modality == {_string(modality)}")
    if exclude_camids:
        parts.append(f"camid not in {_ids(sorted(exclude_camids))}")
    if camids is not None:
        parts.append(f"camid in {_ids(sorted(c for c in camids if c != UNKNOWN))}")
    if pid is not None:
        parts.append(f"pid == {int(pid)}")
    if since is not None or until is not None:
        parts.append(f"timestamp >= {int(since) if since is not None else 0}")
    if until is not None:
        parts.append(f"timestamp <= {int(until)}")
    return " and ".join(parts)


def _build_parameters(settings: IndexSettings) -> dict[str, Any]:
    if settings.type == "hnsw":
        return {"M": settings.hnsw_m, "efConstruction": settings.ef_construction}
    if settings.type == "ivfflat":
        return {"nlist": settings.nlist}
    return {}


def _search_parameters(settings: IndexSettings, top_k: int) -> dict[str, Any]:
    if settings.type == "hnsw":
        return {"ef": max(settings.ef_search, top_k)}
    if settings.type == "ivfflat":
        return {"nprobe": settings.nprobe}
    return {}


def _manifests(client) -> None:
    """The collection of manifests (one row per gallery of the database), made when first needed."""
    from pymilvus import DataType

    if client.has_collection(MANIFESTS):
        return
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("collection", DataType.VARCHAR, is_primary=True, max_length=256)
    schema.add_field("manifest", DataType.VARCHAR, max_length=65_535)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector in every collection
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_collection(MANIFESTS, schema=schema, index_params=index)


def _read_manifest(client, address: Address) -> Manifest | None:
    _manifests(client)
    client.load_collection(MANIFESTS)
    rows = client.get(MANIFESTS, ids=[address.collection], output_fields=["manifest"])
    if not rows:
        return None
    try:
        return Manifest.model_validate_json(rows[0]["manifest"])
    except ValueError as error:
        raise GalleryError(f"{address}: corrupt manifest ({str(error).splitlines()[0][:200]})") from None


def _write_manifest(client, address: Address, manifest: Manifest) -> None:
    _manifests(client)
    client.upsert(MANIFESTS, [{"collection": address.collection, "manifest": manifest.model_dump_json(),
                               "vector": [1.0, 0.0]}])


@contextmanager
def updating(address: str | Address) -> Iterator[MilvusGallery]:
    """The gallery, for a change (the database orders concurrent writers; each write saves the manifest)."""
    yield MilvusGallery.open(address)
