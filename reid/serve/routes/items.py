"""``/api/v1/items/{id}``: add images, remove an item, and an item's pictures."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from reid.serve.dependencies import Service, read_uploads, writer
from reid.serve.errors import error_responses
from reid.serve.schemas import Added, Removed
from reid.serve.service import MAX_ID

router = APIRouter(prefix="/api/v1/items", tags=["items"])
ItemId = Annotated[int, Path(ge=-MAX_ID, le=MAX_ID, description="an item's own id (as searches return it)")]
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "a JPEG"}}


@router.post("", summary="Add images to the gallery (needs the write token)", response_model=Added,
             dependencies=[Depends(writer)], responses=error_responses(400, 401, 403, 413))
async def add(
        service: Service,
        images: Annotated[list[UploadFile], File(description="images to add")],
        pid: Annotated[int | None, Form(ge=0, le=MAX_ID)] = None,
        camid: Annotated[int | None, Form(ge=0, le=MAX_ID)] = None,
        modality: Annotated[str | None, Form(pattern="^(vis|ir)$", description="default: guessed")] = None,
        timestamp: Annotated[int | None, Form(ge=0, le=MAX_ID, description="when they were seen (seconds since "
                                                                           "1970 UTC)")] = None,
) -> dict:
    uploads = await read_uploads(service, images)
    return await run_in_threadpool(service.add, uploads, pid, camid, modality, timestamp)


@router.delete("/{item_id}", summary="Remove an item (needs the write token)", response_model=Removed,
               dependencies=[Depends(writer)], responses=error_responses(401, 403, 404, 409))
def remove(service: Service, item_id: ItemId) -> dict:
    return service.remove(item_id)


@router.get("/{item_id}/thumbnail", summary="An item's thumbnail (JPEG, 64x128)", response_class=Response,
            responses=JPEG | error_responses(404, 409))
def thumbnail(service: Service, item_id: ItemId) -> Response:
    return Response(service.item_thumbnail(item_id), media_type="image/jpeg", headers={"Cache-Control": "max-age=60"})


@router.get("/{item_id}/image", summary="An item's image, enlarged (JPEG, at most 512 pixels)",
            response_class=Response, responses=JPEG | error_responses(404, 409))
def image(service: Service, item_id: ItemId) -> Response:
    return Response(service.item_image(item_id), media_type="image/jpeg", headers={"Cache-Control": "max-age=60"})
