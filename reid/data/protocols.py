"""The official cross-modality evaluation protocols: which gallery items a query does not see, and the CMC style.

Every caller that needs the rule (the evaluator, the test oracle, rank-list pictures) asks a ``Protocol`` object;
datasets hold theirs. A new rule is a removal function and a ``Protocol`` in ``PROTOCOLS``; what the evaluator
needs to know about it (whether it only hides the query's own identity) is checked against the labels it
evaluates. The rules (see the
dataset readers for the layouts):

=========  ==================================================  =====================================
protocol   gallery items removed for a query                   CMC
=========  ==================================================  =====================================
llcm       same pid and same camera                            identity de-duplicated (LLCM code)
sysu       camera 2 items, for a query from camera 3           identity de-duplicated (SYSU code)
regdb      none                                                standard
vcm        same pid and same camera                            standard
standard   same pid and same camera                            standard
custom     same pid and same camera, when the camera is known  standard (your own data: ``folder``)
=========  ==================================================  =====================================
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reid.errors import ReidError

if TYPE_CHECKING:  # torch is imported where the rules run, so datasets (and the CLI) load without it
    import numpy as np
    import torch

    IdTensor = torch.Tensor | np.ndarray | Sequence[int]
    # (query pids, query camids, gallery pids, gallery camids), broadcast to (queries, gallery) -> removed
    RemovalRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _same_identity_and_camera(query_pids, query_camids, gallery_pids, gallery_camids) -> torch.Tensor:
    return (query_pids == gallery_pids) & (query_camids == gallery_camids)


def _same_identity_and_known_camera(query_pids, query_camids, gallery_pids, gallery_camids) -> torch.Tensor:
    # an unknown camera (-1) is nobody's own view: nothing is known to be the query's, so nothing is hidden
    return (query_pids == gallery_pids) & (query_camids == gallery_camids) & (query_camids >= 0)


def _camera3_drops_camera2(query_pids, query_camids, gallery_pids, gallery_camids) -> torch.Tensor:
    # SYSU-MM01: cameras 2 and 3 are in the same room, so a camera-3 query never sees camera-2 images
    return (query_camids == 3) & (gallery_camids == 2)


def _nothing(query_pids, query_camids, gallery_pids, gallery_camids) -> torch.Tensor:
    import torch

    return torch.zeros(torch.broadcast_shapes(query_pids.shape, gallery_pids.shape), dtype=torch.bool,
                       device=query_pids.device)


def _ids(values: IdTensor, device: torch.device | None = None) -> torch.Tensor:
    import numpy as np
    import torch

    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.int64)


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol.

    Attributes:
        name: Protocol name, as written in reports.
        removes: The removal rule, in words.
        dedup_cmc: Rank-k over the ranked list with only the first item of each identity kept (LLCM and
            SYSU-MM01 reference code); mAP and mINP always use the full filtered list.
        rule: The removal rule, elementwise over (broadcast) query and gallery pids and camids.
    """

    name: str
    removes: str
    dedup_cmc: bool
    rule: RemovalRule

    def hides_only_matches(self, query_pids: IdTensor, query_camids: IdTensor, gallery_pids: IdTensor,
                           gallery_camids: IdTensor) -> bool:
        """Whether, on these labels, the rule hides nothing but items of the query's own identity, so that the
        evaluator need only ask it about matching pairs (its fast path); False when it hides others too
        (SYSU-MM01's camera rule).

        Checked against the labels the evaluation really has, never a fixed range: the rule is asked about every
        distinct (pid, camera) of the queries against every distinct one of the gallery, a few thousand pairs
        where the evaluation has millions."""
        import torch

        query = torch.unique(torch.stack([_ids(query_pids), _ids(query_camids)]), dim=1)
        gallery_pids = _ids(gallery_pids)
        gallery = torch.unique(torch.stack([gallery_pids, _ids(gallery_camids, gallery_pids.device)]), dim=1)
        query = query.to(gallery.device)
        removed = self.removed(query[0], query[1], gallery[0], gallery[1])
        return not bool((removed & (query[0].unsqueeze(1) != gallery[0].unsqueeze(0))).any())

    def removed(
            self,
            query_pids: IdTensor,
            query_camids: IdTensor,
            gallery_pids: IdTensor,
            gallery_camids: IdTensor,
    ) -> torch.Tensor:
        """Boolean (queries, gallery) mask: True where the gallery item is hidden from the query.

        Every argument is one-dimensional; the mask is on the device of ``gallery_pids``.
        """
        import torch

        device = gallery_pids.device if isinstance(gallery_pids, torch.Tensor) else None
        gallery_pids, gallery_camids = _ids(gallery_pids, device), _ids(gallery_camids, device)
        device = gallery_pids.device
        query_pids, query_camids = _ids(query_pids, device), _ids(query_camids, device)
        if not (query_pids.ndim == query_camids.ndim == gallery_pids.ndim == gallery_camids.ndim == 1):
            raise ValueError("pids and camids must be one-dimensional")
        return self.rule(query_pids.unsqueeze(1), query_camids.unsqueeze(1), gallery_pids.unsqueeze(0),
                         gallery_camids.unsqueeze(0))


LLCM = Protocol("llcm", "same pid and same camera", True, _same_identity_and_camera)
SYSU = Protocol("sysu", "camera-2 items for a camera-3 query", True, _camera3_drops_camera2)
REGDB = Protocol("regdb", "nothing", False, _nothing)
VCM = Protocol("vcm", "same pid and same camera", False, _same_identity_and_camera)
STANDARD = Protocol("standard", "same pid and same camera", False, _same_identity_and_camera)
CUSTOM = Protocol("custom", "same pid and same known camera", False, _same_identity_and_known_camera)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (LLCM, SYSU, REGDB, VCM, STANDARD, CUSTOM)}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The protocol object for a name (an object is returned as it is)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ReidError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]
