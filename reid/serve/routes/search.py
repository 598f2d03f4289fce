"""``POST /api/v1/search``: query images, or a gallery item, against the gallery; micro-batched."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from reid.engine.galleries import image_modality
from reid.serve.dependencies import Batcher, Service, read_uploads
from reid.serve.errors import error_responses
from reid.serve.schemas import SearchAnswer
from reid.serve.service import MAX_ID, Query, RequestError, decode_upload

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.post("/search", summary="Search the gallery with images, or with a gallery item", response_model=SearchAnswer,
             responses=error_responses(400, 404, 409, 413))
async def search(
        service: Service,
        batcher: Batcher,
        images: Annotated[list[UploadFile] | None, File(description="query images")] = None,
        item_id: Annotated[int | None, Form(ge=-MAX_ID, le=MAX_ID, description="search with this gallery item "
                                                                               "instead (it is not returned)")]
        = None,
        top_k: Annotated[int, Form(ge=1, le=100)] = 10,
        modality: Annotated[str | None, Form(pattern="^(vis|ir)$", description="gallery side")] = None,
        query_modality: Annotated[str | None, Form(pattern="^(vis|ir)$", description="default: guessed")] = None,
        cameras: Annotated[list[int] | None, Form(description="keep only items known to be from these cameras")]
        = None,
        exclude_cameras: Annotated[list[int] | None, Form(description="leave out items known to be from these "
                                                                      "cameras (items of unknown camera stay)")]
        = None,
        min_score: Annotated[float | None, Form(ge=-1, le=1, description="leave out hits scored below this (no "
                                                                         "hit: no match)")] = None,
        exclude_identity: Annotated[bool, Form(description="with item_id: leave out the item's identity's other "
                                                           "items of its modality too")] = False,
        since: Annotated[int | None, Form(ge=0, le=MAX_ID, description="only items seen at or after this time "
                                                                       "(seconds since 1970 UTC; items without a "
                                                                       "time are left out)")] = None,
        until: Annotated[int | None, Form(ge=0, le=MAX_ID, description="only items seen at or before this time")]
        = None,
        pid: Annotated[int | None, Form(ge=-MAX_ID, le=MAX_ID, description="only the items of this identity")] = None,
) -> dict:
    if (not images) == (item_id is None):
        raise RequestError("give query images (multipart field 'images') or an item_id", 422)
    service.check_cameras(cameras, exclude_cameras)
    kept = tuple(sorted(cameras)) if cameras else None
    left_out = tuple(sorted(exclude_cameras)) if exclude_cameras else None
    if item_id is not None:
        query = service.item_query(item_id, top_k, modality, kept, left_out, min_score, exclude_identity)
    else:
        uploads = await read_uploads(service, images)
        decoded = [decode_upload(data, name, service.limits) for data, name in uploads]
        infrared = [(query_modality or image_modality(image)) == "ir" for image in decoded]
        query = Query(decoded, infrared, [name for _, name in uploads], top_k, modality, kept, left_out, min_score,
                      [None] * len(decoded))
    query.since, query.until, query.pid = since, until, pid
    answer = await batcher.submit(query)
    return {"version": answer["version"], "results": [
        {"query": name, "query_modality": "ir" if flag else "vis", "query_pid": pid, "hits": hits}
        for name, flag, pid, hits in zip(query.names, query.infrared, query.pids, answer["hits"], strict=True)]}
