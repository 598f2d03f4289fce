"""The HTTP side of ``reid serve``: a versioned JSON API (FastAPI, with its OpenAPI page at /docs) and the page.

API, version 1 (every error is a 4xx with a one-line JSON body ``{"error": "..."}``):

=======  ==========================================  ================================================================
GET      /api/v1/health                              ``{"status": "ok"}``
GET      /api/v1/gallery                             size, embedding size, model and digest, index type, cameras, ...
POST     /api/v1/search                              images (multipart ``images``) or ``item_id``; ``top_k``,
                                                     ``modality``, ``cameras`` / ``exclude_cameras`` -> ranked items
POST     /api/v1/items                               add uploaded ``images`` (``pid``, ``camid``, ``modality``);
                                                     needs the bearer token
DELETE   /api/v1/items/{item_id}                     remove an item; needs the bearer token
GET      /api/v1/items/{item_id}/thumbnail           a JPEG thumbnail, by item id only
GET      /api/v1/evaluations/{e}/{direction}         the evaluated queries, worst first
GET      /api/v1/evaluations/{e}/{direction}/{q}/thumbnail?rank=k   the query (0) or its k-th result
=======  ==========================================  ================================================================

No request names a file-system path: items are ids, evaluation images are (report, direction, query, rank).
"""

import hmac
import math
from importlib.resources import files
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from reid.engine.galleries import image_modality
from reid.errors import ReidError
from reid.serve.batching import MicroBatcher
from reid.serve.service import GalleryService, Query, RequestError, decode_upload

STATIC = files("reid.serve") / "static"


def create_app(service: GalleryService, token: str | None = None, cors_origins: list[str] | None = None,
               max_batch: int = 32, max_wait: float = 0.005) -> FastAPI:
    """The application: ``service`` answers, ``token`` (when given) allows writes, ``cors_origins`` (when given)
    may call the API from their pages; searches are micro-batched (``max_batch`` images, ``max_wait`` seconds)."""
    import reid

    app = FastAPI(title="reid serve", version=reid.__version__,
                  description="Search a FAISS gallery of person embeddings across visible and infrared cameras.")
    limits = service.limits
    batcher = MicroBatcher(service.search, lambda query: len(query.images), max_batch, max_wait)
    app.state.batcher, app.state.service = batcher, service
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization"])

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(ReidError)
    async def user_error(request: Request, error: ReidError) -> JSONResponse:
        return JSONResponse({"error": str(error).splitlines()[0]}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
        return JSONResponse({"error": f"{where}: {first['msg']}" if where else first["msg"]}, status_code=422)

    def writer(authorization: Annotated[str | None, Header()] = None) -> None:
        """Writes need ``Authorization: Bearer <token>``; without a token configured, the server is read-only."""
        if token is None:
            raise RequestError("this server is read-only: start it with --token-file to allow writes", 403)
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise RequestError("writes need the bearer token: Authorization: Bearer <token>", 401)

    async def read_uploads(images: list[UploadFile]) -> list[tuple[bytes, str]]:
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

    def cameras_kept(cameras: list[int] | None, exclude_cameras: list[int] | None) -> tuple[int, ...] | None:
        known = set(service.cameras())
        for camera in (cameras or []) + (exclude_cameras or []):
            if camera not in known:
                raise RequestError(f"camera {camera} is not in the gallery (its cameras: "
                                   f"{', '.join(map(str, sorted(known))) or 'none known'})", 422)
        if exclude_cameras:
            return tuple(sorted((set(cameras) if cameras else known) - set(exclude_cameras)))
        return tuple(sorted(cameras)) if cameras else None

    @app.get("/api/v1/health", summary="Is the server up")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/v1/gallery", summary="What the gallery is")
    def gallery() -> dict:
        return service.info()

    @app.post("/api/v1/search", summary="Search the gallery with images, or with a gallery item")
    async def search(
            images: Annotated[list[UploadFile] | None, File(description="query images")] = None,
            item_id: Annotated[int | None, Form(description="search with this gallery item instead")] = None,
            top_k: Annotated[int, Form(ge=1, le=limits.max_top_k)] = 10,
            modality: Annotated[str | None, Form(pattern="^(vis|ir)$", description="gallery side")] = None,
            query_modality: Annotated[str | None, Form(pattern="^(vis|ir)$", description="default: guessed")] = None,
            cameras: Annotated[list[int] | None, Form(description="keep only these cameras")] = None,
            exclude_cameras: Annotated[list[int] | None, Form(description="leave these cameras out")] = None,
    ) -> dict:
        if (not images) == (item_id is None):
            raise RequestError("give query images (multipart field 'images') or an item_id", 422)
        kept = cameras_kept(cameras, exclude_cameras)
        if item_id is not None:
            query = service.item_query(item_id, top_k, modality, kept)
        else:
            uploads = await read_uploads(images)
            decoded = [decode_upload(data, name, limits) for data, name in uploads]
            infrared = [(query_modality or image_modality(image)) == "ir" for image in decoded]
            query = Query(decoded, infrared, [name for _, name in uploads], top_k, modality, kept,
                          [None] * len(decoded))
        answer = await batcher.submit(query)
        return {"version": answer["version"], "results": [
            {"query": name, "query_modality": "ir" if flag else "vis", "query_pid": pid, "hits": hits}
            for name, flag, pid, hits in zip(query.names, query.infrared, query.pids, answer["hits"], strict=True)]}

    @app.post("/api/v1/items", summary="Add images to the gallery", dependencies=[Depends(writer)])
    async def add(
            images: Annotated[list[UploadFile], File(description="images to add")],
            pid: Annotated[int | None, Form(ge=0)] = None,
            camid: Annotated[int | None, Form(ge=0)] = None,
            modality: Annotated[str | None, Form(pattern="^(vis|ir)$", description="default: guessed")] = None,
    ) -> dict:
        uploads = await read_uploads(images)
        return await run_in_threadpool(service.add, uploads, pid, camid, modality)

    @app.delete("/api/v1/items/{item_id}", summary="Remove an item", dependencies=[Depends(writer)])
    def remove(item_id: int) -> dict:
        return service.remove(item_id)

    @app.get("/api/v1/items/{item_id}/thumbnail", summary="An item's thumbnail (JPEG)")
    def item_thumbnail(item_id: int) -> Response:
        return Response(service.item_thumbnail(item_id), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=60"})

    @app.get("/api/v1/evaluations/{evaluation}/{direction}", summary="An evaluation's queries, worst first")
    def evaluated_queries(evaluation: int, direction: str) -> dict:
        records = service.evaluation_queries(evaluation, direction)
        order = sorted(range(len(records)), key=lambda q: (math.inf if records[q]["ap"] is None else
                                                           records[q]["ap"], q))
        return {"name": service.evaluations[evaluation].name, "direction": direction, "queries": [
            {"query": q, "ap": records[q]["ap"], "first_match": records[q]["first_match"], "pid": records[q]["pid"],
             "camid": records[q]["camid"], "top": [{"rank": k, "pid": item["pid"], "camid": item["camid"],
                                                    "match": item["match"], "score": item["score"]}
                                                   for k, item in enumerate(records[q]["top"], 1)]}
            for q in order]}

    @app.get("/api/v1/evaluations/{evaluation}/{direction}/{query}/thumbnail",
             summary="An evaluated query's image (rank 0) or its k-th result")
    def evaluation_thumbnail(evaluation: int, direction: str, query: int, rank: int = 0) -> Response:
        return Response(service.evaluation_thumbnail(evaluation, direction, query, rank), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
