"""Index types and their settings (no FAISS needed to read or check them).

An index type is one ``IndexKind`` entry in ``INDEX_TYPES``: the FAISS factory string it builds from the settings
and the data's size, the FAISS class the built index must be, and its per-search parameters. Shipped:

* ``flat``: exact search (IndexFlatIP).
* ``hnsw``: graph search (IndexHNSWFlat; ``hnsw_m`` links per node, ``ef_search`` at query time).
* ``ivfflat``: inverted lists of full vectors (``nlist`` lists, ``nprobe`` searched). Trained on the gallery.
* ``ivfpq``: compressed (IVF with ``nlist`` lists and product quantisation, ``nprobe`` lists searched), with a
  refine step that re-ranks ``k_factor * k`` candidates on 8-bit scalar-quantised vectors, so memory stays near
  ``pq_m + dim`` bytes per vector instead of ``4 * dim``. Trained on the gallery.

A gallery's manifest stores the settings (``IndexSettings``) and the resolved factory string; loading checks the
index file against both.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from reid.errors import ReidError

if TYPE_CHECKING:
    import faiss


class GalleryError(ReidError):
    """A gallery cannot be built, read or used as asked."""


class IndexSettings(BaseModel):
    """Index type and its parameters (None: chosen from the data when the gallery is built)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: str = "flat"
    hnsw_m: StrictInt = Field(32, ge=2)
    ef_construction: StrictInt = Field(200, ge=1)
    ef_search: StrictInt = Field(128, ge=1)
    nlist: StrictInt | None = Field(None, ge=1)  # default: about sqrt(n), at least 1
    nprobe: StrictInt = Field(64, ge=1)  # with k_factor 16: recall@10 0.961 on 1M x 384 (benchmarks/bench_index.py)
    pq_m: StrictInt | None = Field(None, ge=1)  # sub-quantisers; default: dim / 4 (one byte each)
    k_factor: StrictInt = Field(16, ge=1)

    @field_validator("type")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in INDEX_TYPES:
            raise ValueError(f"unknown index type {name!r}; choose from {', '.join(INDEX_TYPES)}")
        return name

    @classmethod
    def from_dict(cls, values: object, source: str) -> IndexSettings:
        """Settings from a manifest's ``index`` entry; unknown keys and wrong types are a GalleryError."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise GalleryError(f"{source}: index settings: {one_line(error)}") from None

    @property
    def kind(self) -> IndexKind:
        return INDEX_TYPES[self.type]

    def resolved(self, count: int, dim: int) -> IndexSettings:
        """The settings with what the data decides filled in (IVF lists, PQ sub-quantisers)."""
        return self.kind.resolve(self, count, dim)

    def factory_string(self) -> str:
        return self.kind.factory(self)

    def minimum_training_vectors(self) -> int:
        return self.kind.minimum_training(self)

    def training_sample_size(self) -> int:
        """Vectors the index is trained on (a random subset beyond this): 64 per centroid is plenty, and
        k-means over every vector of a million-item gallery would take hours on a CPU."""
        return 64 * max(self.nlist or 1, 256 if self.pq_m else 1)


def one_line(error: ValidationError) -> str:
    """pydantic's errors as one line ('; '-joined): unknown and missing keys named, else 'key: message (got
    value)', the value cut short (a huge value is never echoed whole)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if not isinstance(part, int) or len(item["loc"]) == 1)
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key {where!r}")
        elif item["type"] == "missing":
            parts.append(f"missing key {where!r}")
        else:
            got = repr(item.get("input"))
            got = f" (got {got[:60]}{'...' if len(got) > 60 else ''})"
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}{got}" if where else f"{message}{got}")
    return "; ".join(parts)


@dataclass(frozen=True)
class IndexKind:
    """An index type.

    Attributes:
        name: Its name (``--type``, the manifest's ``index.type``).
        summary: One line for ``--help``.
        factory: The FAISS factory string of resolved settings.
        faiss_class: The FAISS class the built index is an instance of (the load-time check).
        exact: Whether a search returns the true nearest neighbours.
        gpu: Whether faiss-gpu can hold it (its unfiltered searches then run on the GPU).
        stored: What the index keeps of each vector: "full" (float32) or "8-bit" (scalar quantised); a filtered
            search that compares qualifying items one by one compares these, so it is exact only with "full".
        search_parameters: Per-search FAISS parameters for resolved settings and an ID selector (or None).
        resolve: Fills in the settings the data decides: (settings, count, dim) -> settings.
        minimum_training: Vectors the index needs to be trained (0: no training).
        configure: Sets what a factory string cannot say, on the freshly built index.
    """

    name: str
    summary: str
    factory: Callable[[IndexSettings], str]
    faiss_class: str
    exact: bool
    gpu: bool
    stored: str
    search_parameters: Callable[[IndexSettings, Any], Any]
    resolve: Callable[[IndexSettings, int, int], IndexSettings] = lambda settings, count, dim: settings
    minimum_training: Callable[[IndexSettings], int] = lambda settings: 0
    configure: Callable[[faiss.Index, IndexSettings], None] = lambda index, settings: None


def _ivf_lists(settings: IndexSettings, count: int, dim: int, **more: Any) -> IndexSettings:
    return settings.model_copy(update={"nlist": settings.nlist or max(1, int(math.sqrt(max(count, 1)))), **more})


def _ivfpq_resolve(settings: IndexSettings, count: int, dim: int) -> IndexSettings:
    pq_m = settings.pq_m or next(m for m in (dim // 4, dim // 8, dim // 2, dim) if m >= 1 and dim % m == 0)
    if dim % pq_m:
        raise GalleryError(f"pq_m={pq_m} must divide the embedding size {dim}")
    return _ivf_lists(settings, count, dim, pq_m=pq_m)


def _plain_parameters(settings: IndexSettings, selector: Any) -> Any:
    import faiss

    return faiss.SearchParameters(sel=selector) if selector is not None else None


def _hnsw_parameters(settings: IndexSettings, selector: Any) -> Any:
    import faiss

    return faiss.SearchParametersHNSW(sel=selector, efSearch=settings.ef_search)


def _ivf_parameters(settings: IndexSettings, selector: Any) -> Any:
    import faiss

    return faiss.SearchParametersIVF(sel=selector, nprobe=settings.nprobe)


def _ivfpq_parameters(settings: IndexSettings, selector: Any) -> Any:
    import faiss

    return faiss.IndexRefineSearchParameters(k_factor=settings.k_factor,
                                             base_index_params=_ivf_parameters(settings, selector))


def _hnsw_configure(index: faiss.Index, settings: IndexSettings) -> None:
    index.hnsw.efConstruction = settings.ef_construction


def _ivfpq_configure(index: faiss.Index, settings: IndexSettings) -> None:
    import faiss

    ivfpq = faiss.downcast_index(faiss.downcast_index(index).base_index)
    # polysemous codes only serve Hamming pre-filtering, which this index does not use, and their training was
    # 3/4 of the build time; 10 k-means iterations per codebook keep recall (measured)
    ivfpq.do_polysemous_training = False
    ivfpq.pq.cp.niter = 10


# FAISS k-means wants ~39 points per centroid: nlist IVF centroids, and 256 PQ centroids per sub-quantiser
INDEX_TYPES: dict[str, IndexKind] = {kind.name: kind for kind in (
    IndexKind("flat", "exact", lambda s: "Flat", "IndexFlat", exact=True, gpu=True, stored="full",
              search_parameters=_plain_parameters),
    IndexKind("hnsw", "graph (hnsw_m, ef_search)", lambda s: f"HNSW{s.hnsw_m},Flat", "IndexHNSWFlat", exact=False,
              gpu=False, stored="full", search_parameters=_hnsw_parameters, configure=_hnsw_configure),
    IndexKind("ivfflat", "inverted lists of full vectors (nlist, nprobe)", lambda s: f"IVF{s.nlist},Flat",
              "IndexIVFFlat", exact=False, gpu=True, stored="full", search_parameters=_ivf_parameters,
              resolve=_ivf_lists, minimum_training=lambda s: 39 * (s.nlist or 1)),
    IndexKind("ivfpq", "compressed: IVF + product quantisation + SQ8 re-ranking (nlist, nprobe, pq_m, k_factor)",
              lambda s: f"IVF{s.nlist},PQ{s.pq_m}x8,Refine(SQ8)", "IndexRefine", exact=False, gpu=False,
              stored="8-bit", search_parameters=_ivfpq_parameters, resolve=_ivfpq_resolve,
              minimum_training=lambda s: 39 * max(s.nlist or 1, 256), configure=_ivfpq_configure),
)}


def index_reference(limit: int) -> str:
    """The index types as a markdown table, generated from ``INDEX_TYPES`` (the README's table is this text, a test
    keeps the two equal): what each is, whether it is exact, where it runs, and what a filtered search returns.

    Args:
        limit: The gallery's exhaustive limit (``reid.index.gallery.EXHAUSTIVE_LIMIT``).
    """
    rows = ["| `--type` | what | unfiltered search | filtered, at most "
            f"{limit:,} qualifying | filtered, more qualifying | faiss-gpu |", "|---|---|---|---|---|---|"]
    for kind in INDEX_TYPES.values():
        few = "exact (compared one by one)" if kind.stored == "full" else \
            f"compared one by one on its {kind.stored} vectors"
        many = "exact" if kind.exact else "as approximate as the index (its search among the qualifying items)"
        rows.append(f"| `{kind.name}` | {kind.summary} | {'exact' if kind.exact else 'approximate'} | {few} | {many} | "
                    f"{'yes' if kind.gpu else 'no: the CPU'} |")
    return "\n".join(rows)
