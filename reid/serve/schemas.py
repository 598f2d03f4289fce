"""The bodies the API returns (pydantic models, so the OpenAPI document describes every response and error)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Modality = Literal["vis", "ir"]


class ErrorBody(BaseModel):
    """Every error: one line that says what is wrong (4xx: the request; 5xx: the server, with the whole reason)."""

    error: str = Field(description="what is wrong, on one line")


class EvaluationInfo(BaseModel):
    name: str = Field(description="the report's file name: what /api/v1/evaluations/{name}/... takes")
    dataset: str
    directions: list[str]
    trial: int = Field(description="the gallery trial the per-query records come from")
    warnings: list[str] = Field(description="why the report may not describe the served gallery")


class GalleryInfo(BaseModel):
    backend: Literal["faiss", "milvus"] = Field(description="where the gallery is kept: FAISS files or Milvus")
    items: int = Field(description="live items")
    embedding_size: int
    backbone: str
    checkpoint_digest: str | None
    index_type: str
    factory: str | None = Field(description="FAISS's factory string of the index")
    by_modality: dict[str, int]
    cameras: list[int] = Field(description="the known cameras of the live items")
    unknown_camera_items: int = Field(description="live items whose camera is not known")
    version: int = Field(description="changes at every save of the gallery and never repeats")
    evaluations: list[EvaluationInfo]


class Health(BaseModel):
    status: Literal["ok"]
    reid_version: str
    engine: str = Field(description="what embeds the queries: torch or onnxruntime")
    device: str
    backend: Literal["faiss", "milvus"]
    items: int
    embedding_size: int
    backbone: str
    checkpoint_digest: str | None
    index_type: str
    cameras: list[int]
    gallery_version: int
    writable: bool = Field(description="whether adding and removing are allowed (a write token is set)")
    max_batch: int = Field(description="images embedded together (micro-batching)")


class Hit(BaseModel):
    item_id: int = Field(description="the item's own id: it names the item until the item is removed")
    rank: int
    score: float = Field(description="cosine similarity")
    pid: int | None
    camid: int | None
    modality: Modality | None
    label: str | None
    file: str = Field(description="the item's file name (a tracklet: its middle frame's)")
    thumbnail: str = Field(description="URL of a small JPEG of the item")
    image: str = Field(description="URL of the item's image at full size (JPEG)")


class QueryResult(BaseModel):
    query: str = Field(description="the uploaded file's name, or 'item N'")
    query_modality: Modality
    query_pid: int | None = Field(description="the query's identity when it is a gallery item with one")
    hits: list[Hit]


class SearchAnswer(BaseModel):
    version: int = Field(description="the gallery version that answered")
    results: list[QueryResult]


class Item(BaseModel):
    item_id: int
    pid: int | None
    camid: int | None
    modality: Modality | None
    label: str | None
    file: str
    thumbnail: str
    image: str


class ItemPage(BaseModel):
    total: int = Field(description="live items that pass the filters")
    offset: int
    limit: int
    version: int
    items: list[Item]


class Added(BaseModel):
    added: int
    item_ids: list[int]
    items: int = Field(description="live items after the add")


class Removed(BaseModel):
    removed: int
    items: int = Field(description="live items after the removal")


class EvaluatedItem(BaseModel):
    rank: int
    pid: int
    camid: int
    match: bool = Field(description="the query's identity")
    score: float


class EvaluatedQuery(BaseModel):
    query: int = Field(description="the query's position in the report: what the thumbnail URL takes")
    ap: float | None = Field(description="average precision in percent; null without a true match")
    first_match: int | None = Field(description="rank of the first true match")
    first_match_item: EvaluatedItem | None = Field(description="that match, when it is below the top-10")
    pid: int
    camid: int
    top: list[EvaluatedItem]


class DirectionSummary(BaseModel):
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mINP: float


class EvaluationView(BaseModel):
    name: str
    dataset: str
    direction: str
    trial: int
    summary: DirectionSummary = Field(description="the report's mean over its trials, in percent")
    warnings: list[str]
    queries: list[EvaluatedQuery] = Field(description="worst first (lowest AP; no true match last)")
