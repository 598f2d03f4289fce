"""``GET /api/v1/health``, ``GET /api/v1/gallery`` and ``GET /api/v1/items``: what is served, and its items."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from reid.serve.dependencies import Service
from reid.serve.errors import error_responses
from reid.serve.schemas import GalleryInfo, Health, ItemPage
from reid.serve.service import MAX_ID

router = APIRouter(prefix="/api/v1", tags=["gallery"])


@router.get("/health", summary="Is the server up, and what does it serve", response_model=Health,
            responses=error_responses())
def health(service: Service, request: Request) -> dict:
    import reid

    info = service.info()
    return {"status": "ok", "reid_version": reid.__version__, "engine": service.embedder.engine,
            "device": str(service.embedder.device), "backend": info["backend"], "items": info["items"],
            "embedding_size": info["embedding_size"],
            "backbone": info["backbone"], "checkpoint_digest": info["checkpoint_digest"],
            "index_type": info["index_type"], "cameras": info["cameras"], "gallery_version": info["version"],
            "writable": request.app.state.token is not None, "max_batch": request.app.state.batcher.max_batch}


@router.get("/gallery", summary="What the gallery is", response_model=GalleryInfo, responses=error_responses())
def gallery(service: Service) -> dict:
    return service.info()


@router.get("/items", summary="Browse the gallery's items, a page at a time", response_model=ItemPage,
            responses=error_responses())
def items(service: Service,
          offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
          limit: Annotated[int, Query(ge=1, le=MAX_ID, description="items per page (at most 200)")] = 48,
          modality: Annotated[str | None, Query(pattern="^(vis|ir)$")] = None,
          camera: Annotated[int | None, Query(ge=-MAX_ID, le=MAX_ID)] = None,
          pid: Annotated[int | None, Query(ge=-MAX_ID, le=MAX_ID, description="only this identity")] = None) -> dict:
    return service.items(offset, limit, modality, camera, pid)
