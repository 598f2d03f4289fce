"""One mapping from what went wrong to an HTTP status and its body ``{"error": "..."}``, for every route.

* The client's fault is a 4xx that says what to change: a ``RequestError`` (its own status), a request that does not
  validate (422), an unknown route (404), a body larger than allowed (413: FastAPI's ``max_body_size`` decides it
  from ``Content-Length`` before a byte is read, or while a body without one streams in).
* The server's fault is a 5xx with the whole reason on one line: anything else the library refuses (a gallery
  file that vanished, a corrupt gallery on disk: 503, since retrying after a repair can help) and anything
  unexpected, such as a model that fails (500).
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reid.errors import ReidError, problems_in
from reid.serve.schemas import ErrorBody
from reid.serve.service import RequestError

logger = logging.getLogger("reid.serve")

# What every route may answer besides its success, for the OpenAPI document.
ERRORS = {422: {"model": ErrorBody, "description": "a parameter that does not validate"},
          500: {"model": ErrorBody, "description": "the server failed (the body says how)"},
          503: {"model": ErrorBody, "description": "the gallery cannot be read now (the body says why)"}}


def error_responses(*statuses: int) -> dict:
    """The OpenAPI entries of a route's errors: the common ones and ``statuses`` (400, 401, 403, 404, 409, 413)."""
    described = {400: "the request is not what the route takes", 401: "the write token is missing or wrong",
                 403: "the server is read-only", 404: "no such item, evaluation or query",
                 409: "the item was removed", 413: "too large: a body, an upload, an image, or too many"}
    return ERRORS | {status: {"model": ErrorBody, "description": described[status]} for status in statuses}


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def body_too_large(limit: int) -> str:
    return f"the request body is more than the {limit:,} bytes a request may carry"


def install(app: FastAPI) -> None:
    """Map every error to its status and one-line body."""

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": one_line(error)}, status_code=error.status)

    @app.exception_handler(ReidError)
    async def unusable(request: Request, error: ReidError) -> JSONResponse:
        message = "; ".join(one_line(problem) for problem in problems_in(error))
        logger.error("%s %s: %s", request.method, request.url.path, message)
        return JSONResponse({"error": message}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = one_line(error.detail)
        if error.status_code == 413 and getattr(app, "max_body_size", None):  # the body limit's own 413
            message = body_too_large(app.max_body_size)
        return JSONResponse({"error": message}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
        message = one_line(first["msg"])
        return JSONResponse({"error": f"{where}: {message}" if where else message}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"the server failed: {type(error).__name__}: {one_line(error)}"[:2000]},
                            status_code=500)
