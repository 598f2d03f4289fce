"""Visible-infrared person re-identification: AttNet backbones, official protocols, FAISS galleries.

``import reid.models`` registers the AttNet, ACmix and ATConv drop-in variants in timm
(``timm.create_model("attnet_t2")``). Importing ``reid`` itself loads nothing heavy, so the command line answers
``--help`` at once.

The package is layered in the direction the data flows; a module imports only from its own layer and the layers
before it (``tests/test_layers.py`` checks every import):

1. ``errors``, ``io``, ``settings``, ``catalogue``, ``threads``: plain Python, no torch.
2. ``data``: readers, protocols, samples, the sampler, transforms, loaders.
3. ``models``: ATConv, AttNet, ACmix, the drop-ins, any timm backbone, the re-ID model.
4. ``losses`` (and the ``metric_losses`` registry), ``metrics``, ``rerank``, ``report``, ``retrieval``,
   ``visualize``, ``profiling``, ``index``, ``config``, ``runs``.
5. ``engine``: training, evaluation, embedding, galleries from samples, export, comparison, the demo.
6. ``serve``: the search service and its page (FastAPI, the optional extra ``[serve]``).
7. ``cli`` (and ``__main__``): the command line, one module per command group.

``reid.config``, ``reid.runs`` and the layers before ``data``'s loaders load no torch, so a command checks its
options, config, files and run directory before it pays for importing torch.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vireid")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
