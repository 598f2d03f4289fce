"""Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries.

``import reid.models`` registers the AttNet variants in timm (``timm.create_model("attnet_t2")``). Importing
``reid`` itself loads nothing heavy, so the command line answers ``--help`` at once.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vireid")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
