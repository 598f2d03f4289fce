"""The HTTP side of ``reid serve``: a versioned JSON API (FastAPI, its OpenAPI page at /docs) and the page.

The application is put together from routers, one per resource (``reid.serve.routes``); the routes reach the
service and the micro-batcher through ``Depends`` (``reid.serve.dependencies``) from the application's state; the
micro-batcher starts and stops with the application (its lifespan); one mapping turns every error into its status
and a one-line body ``{"error": "..."}`` (``reid.serve.errors``); pydantic models describe every response
(``reid.serve.schemas``), so the OpenAPI document has a schema for every route and status.

API, version 1:

=======  ==============================================  ==========================================================
GET      /api/v1/health                                  up, and what it serves (model, engine, gallery, writes)
GET      /api/v1/gallery                                 size, embedding size, model and digest, index, cameras, ...
GET      /api/v1/items?offset&limit&modality&camera&pid  browse the items, a page at a time
POST     /api/v1/search                                  images (multipart ``images``) or ``item_id``; ``top_k``,
                                                         ``modality``, ``cameras`` / ``exclude_cameras``,
                                                         ``min_score``, ``exclude_identity`` -> ranked items
POST     /api/v1/items                                   add uploaded ``images`` (``pid``, ``camid``, ``modality``);
                                                         needs the bearer token
DELETE   /api/v1/items/{item_id}                         remove an item; needs the bearer token
GET      /api/v1/items/{item_id}/thumbnail, /image       an item's thumbnail, or its image enlarged
GET      /api/v1/evaluations/{name}/{direction}          a report's summary and its queries, worst first
GET      /api/v1/evaluations/{name}/{direction}/{q}/thumbnail?rank=k   the query (0), its k-th result or its
                                                         first true match
=======  ==============================================  ==========================================================

No request names a file-system path: items are ids, evaluation images are (report, direction, query, rank).
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers

from reid.serve import errors
from reid.serve.batching import MicroBatcher
from reid.serve.routes import evaluations, gallery, items, page, search
from reid.serve.service import GalleryService


class ServeApp(FastAPI):
    """FastAPI, with a request whose Content-Length declares more than the body limit answered at once in the API's
    own one-line body (Starlette's body limit answers that case in plain text, over whatever the app answered)."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.max_body_size is not None:
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_size:
                response = JSONResponse({"error": errors.body_too_large(self.max_body_size)}, status_code=413)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(service: GalleryService, token: str | None = None, cors_origins: list[str] | None = None,
               max_batch: int = 32, max_wait: float = 0.005) -> FastAPI:
    """The application: ``service`` answers, ``token`` (when given) allows writes, ``cors_origins`` (when given)
    may call the API from their pages; searches are micro-batched (``max_batch`` images, ``max_wait`` seconds)."""
    import reid

    batcher = MicroBatcher(service.search, lambda query: len(query.images), max_batch, max_wait)

    @asynccontextmanager
    async def lifespan(application: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = ServeApp(title="reid serve", version=reid.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  max_body_size=service.limits.max_body,
                  description="Search a gallery of person embeddings across visible and infrared cameras.")
    app.state.service, app.state.batcher, app.state.token = service, batcher, token
    errors.install(app)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization"])
    for module in (gallery, search, items, evaluations, page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(page.STATIC)), name="static")
    if (swagger := page.swagger_files()) is not None:
        app.mount("/docs-files", StaticFiles(directory=swagger), name="docs-files")
    return app
