"""Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries.

Importing ``reid`` registers the AttNet variants in timm (``timm.create_model("attnet_t2")``).
"""
from importlib.metadata import PackageNotFoundError, version

from reid import models  # noqa: F401  (registers attnet_* in timm)

try:
    __version__ = version("vireid")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
