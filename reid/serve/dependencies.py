"""What the routes share, taken from the application's state (set up by ``create_app``) through ``Depends``."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request, UploadFile

from reid.serve.batching import MicroBatcher
from reid.serve.service import GalleryService, RequestError


def get_service(request: Request) -> GalleryService:
    return request.app.state.service


def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


Service = Annotated[GalleryService, Depends(get_service)]
Batcher = Annotated[MicroBatcher, Depends(get_batcher)]


def writer(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Writes need ``Authorization: Bearer <token>``; without a token configured, the server is read-only."""
    token = request.app.state.token
    if token is None:
        raise RequestError("this server is read-only: start it with --token-file to allow writes", 403)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError("writes need the bearer token: Authorization: Bearer <token>", 401)


async def read_uploads(service: GalleryService, images: list[UploadFile]) -> list[tuple[bytes, str]]:
    """The uploads' bytes and names, each checked against the limits as it is read."""
    limits = service.limits
    if len(images) > limits.max_images:
        raise RequestError(f"{len(images)} images is more than the {limits.max_images} a request may carry", 413)
    uploads = []
    for upload in images:
        data = await upload.read(limits.max_bytes + 1)
        name = upload.filename or "upload"
        if len(data) > limits.max_bytes:
            raise RequestError(f"{name}: more than the {limits.max_bytes:,} bytes an upload may be", 413)
        uploads.append((data, name))
    return uploads
