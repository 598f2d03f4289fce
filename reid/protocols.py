"""The official cross-modality evaluation protocols: which gallery items a query may not match, and CMC style.

specs/datasets.md has the rules; in short:

=========  ==================================================  =====================================
protocol   gallery items removed for a query                   CMC
=========  ==================================================  =====================================
llcm       same pid and same camera                            identity de-duplicated (LLCM code)
sysu       camera 2 items, for a query from camera 3           identity de-duplicated (SYSU code)
regdb      none                                                standard
vcm        same pid and same camera                            standard
standard   same pid and same camera                            standard
=========  ==================================================  =====================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from reid.errors import ReidError

Removal = Literal["same_pid_and_camera", "cam3_query_drops_cam2", "none"]


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol.

    Attributes:
        name: Protocol name, as used on the command line.
        removal: Which gallery items are removed for each query.
        dedup_cmc: Rank-k over the ranked list with only the first item of each identity kept (LLCM and
            SYSU-MM01 reference code); mAP and mINP always use the full filtered list.
    """

    name: str
    removal: Removal
    dedup_cmc: bool


PROTOCOLS: dict[str, Protocol] = {
    "llcm": Protocol("llcm", "same_pid_and_camera", dedup_cmc=True),
    "sysu": Protocol("sysu", "cam3_query_drops_cam2", dedup_cmc=True),
    "regdb": Protocol("regdb", "none", dedup_cmc=False),
    "vcm": Protocol("vcm", "same_pid_and_camera", dedup_cmc=False),
    "standard": Protocol("standard", "same_pid_and_camera", dedup_cmc=False),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ReidError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def removal_mask(
        protocol: Protocol,
        ranked_matches: torch.Tensor,
        ranked_camids: torch.Tensor,
        query_camids: torch.Tensor,
) -> torch.Tensor | None:
    """Boolean (queries, gallery) mask of removed items, in ranked order; None when nothing is removed.

    Args:
        protocol: The protocol.
        ranked_matches: Whether each ranked gallery item has the query's pid.
        ranked_camids: Camera of each ranked gallery item.
        query_camids: Camera of each query.
    """
    if protocol.removal == "none":
        return None
    if protocol.removal == "same_pid_and_camera":
        return ranked_matches & (ranked_camids == query_camids.unsqueeze(1))
    if protocol.removal == "cam3_query_drops_cam2":
        return (query_camids == 3).unsqueeze(1) & (ranked_camids == 2)
    raise AssertionError(protocol.removal)
