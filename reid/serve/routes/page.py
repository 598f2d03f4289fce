"""The page (``/``, its files under ``/static``, a favicon) and the API's OpenAPI page (``/docs``), all served from
the package, so they work on a network that reaches nothing else."""
from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = files("reid.serve") / "static"
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return (STATIC / "index.html").read_text()


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(str(STATIC / "favicon.svg"), media_type="image/svg+xml")


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    """Swagger UI from the swagger-ui-bundle package (part of the serve extra); without it, a page that says where
    the OpenAPI document is."""
    if swagger_files() is None:
        return HTMLResponse("<!doctype html><title>reid serve API</title><p>The API is described in "
                            "<a href='/openapi.json'>/openapi.json</a> (pip install swagger-ui-bundle for the "
                            "interactive page).</p>")
    return get_swagger_ui_html(openapi_url="/openapi.json", title="reid serve API",
                               swagger_js_url="/docs-files/swagger-ui-bundle.js",
                               swagger_css_url="/docs-files/swagger-ui.css", swagger_favicon_url="/favicon.ico")


def swagger_files() -> str | None:
    """Where swagger-ui-bundle keeps Swagger UI's files, or None when it is not installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return swagger_ui_bundle.swagger_ui_path
