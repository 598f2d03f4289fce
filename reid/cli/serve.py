"""``reid serve``: a search page and a JSON API over a gallery."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import GalleryOption, ModelSource, RunOptions, command, console, group, load_embedder
from reid.cli.index import gallery_problems
from reid.errors import problems_of, refuse
from reid.io import regular_file

app = group("Serve a gallery.")


@command(app, "serve")
def serve_command(
        index: GalleryOption,
        model: ModelSource,
        run: RunOptions,
        host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on; anything but loopback needs a "
                                                               "write token")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, metavar="INT", help="Port to listen on")] = 8000,
        token_file: Annotated[Path | None, typer.Option(metavar="PATH", help="A file whose first line is the bearer "
                                                                             "token that allows writes (or set "
                                                                             "REID_SERVE_TOKEN); without one the "
                                                                             "server is read-only")] = None,
        evaluation: Annotated[list[Path] | None, typer.Option(metavar="REPORT.json", help="A reid evaluate --output "
                                                              "report to show, worst queries first (repeatable)")]
        = None,
        uploads: Annotated[Path | None, typer.Option(metavar="PATH", help="Where added images are kept (default: "
                                                                          "<gallery>.uploads beside the gallery)")]
        = None,
        cors_origin: Annotated[list[str] | None, typer.Option(metavar="ORIGIN", help="A web origin allowed to call "
                                                              "the API from its pages (repeatable; default: none)")]
        = None,
        max_batch: Annotated[int, typer.Option(min=1, metavar="INT", help="Images embedded together (1: no "
                                                                          "micro-batching)")] = 32,
        max_wait_ms: Annotated[float, typer.Option(min=0, metavar="FLOAT", help="How long a search waits for others "
                                                                                "to join its batch")] = 5.0,
) -> None:
    """Serve a gallery: a JSON API (OpenAPI page at /docs) and a search page at http://HOST:PORT/."""
    from reid.serve import check_exposure, read_token, require_fastapi

    token: list[str | None] = [None]

    def token_read() -> None:
        token[0] = read_token(token_file)

    problems = gallery_problems(index) + model.problems() + problems_of(token_read)
    problems += problems_of(lambda: check_exposure(host, token[0]), require_fastapi)
    problems += [f"--evaluation {report}: no such file" for report in evaluation or [] if not regular_file(report)]
    refuse(problems)
    import uvicorn

    from reid.serve.app import create_app
    from reid.serve.service import GalleryService

    service = GalleryService(load_embedder(model, run, batch_size=max_batch), index, uploads, evaluation or [])
    application = create_app(service, token[0], cors_origin, max_batch, max_wait_ms / 1000)
    writes = "writes need the bearer token" if token[0] else "read-only: no write token"
    console.print(f"serving {index} ({service.info()['items']} items) on http://{host}:{port}/ ({writes}); "
                  f"the API is described at /docs; Ctrl-C stops")
    uvicorn.run(application, host=host, port=port, log_level="warning")

