"""``reid serve``: a search service and a web page over one FAISS gallery (and, optionally, evaluation reports).

``service`` holds the model and the gallery (reloaded when another process changes it), ``batching`` groups the
searches that arrive together into one forward pass, ``app`` is the HTTP API and the page (``static/``). This
module starts it, safe by default: bound to 127.0.0.1, read-only without a token, and refused on another address
without one. FastAPI and uvicorn are the optional extra ``vireid[serve]``.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from reid.errors import ReidError
from reid.io import regular_file

TOKEN_VARIABLE = "REID_SERVE_TOKEN"
MISSING = "reid serve needs FastAPI and uvicorn: pip install 'vireid[serve]'"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def read_token(token_file: Path | None, environment: dict[str, str] | None = None) -> str | None:
    """The write token: the first line of ``token_file``, else the REID_SERVE_TOKEN variable, else None (the
    server is then read-only). A token shorter than 16 characters is refused, as guessable."""
    environment = os.environ if environment is None else environment
    if token_file is not None:
        if not regular_file(token_file):
            raise ReidError(f"--token-file {token_file}: no such file")
        lines = token_file.read_text(errors="replace").splitlines()
        token, source = (lines[0].strip() if lines else ""), f"--token-file {token_file}"
    elif environment.get(TOKEN_VARIABLE):
        token, source = environment[TOKEN_VARIABLE].strip(), TOKEN_VARIABLE
    else:
        return None
    if len(token) < 16:
        raise ReidError(f"{source}: the token must be at least 16 characters (e.g. python -c \"import secrets; "
                        f"print(secrets.token_urlsafe())\")")
    return token


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a write token."""
    if not is_loopback(host) and token is None:
        raise ReidError(f"--host {host} listens beyond this machine: give a write token (--token-file F or "
                        f"{TOKEN_VARIABLE}), or bind to 127.0.0.1")


def require_fastapi() -> None:
    """A one-line error when the serve extra is not installed."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
        import uvicorn  # noqa: F401
    except ImportError:
        raise ReidError(MISSING) from None
