"""Evaluation reports: metrics per search direction and trial, as a rich table and as JSON.

The JSON schema, used by every command that reports metrics (values in percent)::

    {"dataset": "llcm", "protocol": "llcm", "trials": 10, "reranked": false,
     "model": {"backbone": "attnet_t1", "checkpoint": "runs/x/best.pt", "digest": "<sha256>"},   # when known
     "command": "reid evaluate ...",                                                             # when known
     "results": {"ir2vis": {"rank1": .., "rank5": .., "rank10": .., "rank20": .., "mAP": .., "mINP": ..,
                            "std": {"rank1": .., ...}},      # "std" only with several trials
                 "vis2ir": {...}},
     "queries": {"ir2vis": [{"query": path, "pid", "camid", "ap", "first_match",                 # when asked for
                             "first_match_item": {"rank", "path", "pid", "camid", "score"} or null,
                             "top": [{"path", "pid", "camid", "match", "score"}, ...]}, ...], ...},
     "queries_trial": 0}                                                     # the trial the queries come from

A query's ``first_match`` is the rank of its first true match as the protocol's CMC counts it (LLCM and SYSU-MM01
count each identity once, so a rank there can be smaller); ``first_match_item["rank"]`` is that item's place in
the ranked list the ``top`` items begin.

Standard deviations are sample standard deviations over trials (ddof=1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from reid.io import atomic_write_text
from reid.metrics import RankResult

DIRECTIONS = ("ir2vis", "vis2ir")
METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
DIRECTION_TITLES = {"ir2vis": "ir -> vis", "vis2ir": "vis -> ir"}


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def result_percentages(result: RankResult) -> dict[str, float]:
    """rank-1/5/10/20, mAP and mINP of one result (in percent, as RankResult holds them)."""
    values = {f"rank{k}": result.rank(k) for k in (1, 5, 10, 20)}
    return dict(values, mAP=result.mAP, mINP=result.mINP)


@dataclass
class EvaluationReport:
    """Results of one evaluation: one RankResult per trial for each search direction."""

    dataset: str
    protocol: str
    results: dict[str, list[RankResult]] = field(default_factory=dict)
    reranked: bool = False
    model: dict | None = None  # backbone, checkpoint, digest of what was evaluated
    command: str | None = None  # the command line that produced the report
    queries: dict[str, list[dict]] = field(default_factory=dict)  # per direction, each query of the first trial
    queries_trial: int = 0  # the gallery trial the per-query records come from

    def add(self, direction: str, result: RankResult) -> None:
        self.results.setdefault(direction, []).append(result)

    @property
    def trials(self) -> int:
        return max((len(r) for r in self.results.values()), default=0)

    def mean(self, direction: str) -> dict[str, float]:
        rows = [result_percentages(r) for r in self.results[direction]]
        return {key: float(np.mean([row[key] for row in rows])) for key in METRIC_KEYS}

    def std(self, direction: str) -> dict[str, float] | None:
        rows = [result_percentages(r) for r in self.results[direction]]
        if len(rows) < 2:
            return None
        return {key: float(np.std([row[key] for row in rows], ddof=1)) for key in METRIC_KEYS}

    def to_dict(self) -> dict:
        results = {}
        for direction in self.results:
            entry: dict = {key: round(value, 4) for key, value in self.mean(direction).items()}
            spread = self.std(direction)
            if spread is not None:
                entry["std"] = {key: round(value, 4) for key, value in spread.items()}
            results[direction] = entry
        provenance = {key: value for key, value in (("model", self.model), ("command", self.command)) if value}
        return {"dataset": self.dataset, "protocol": self.protocol, "trials": self.trials, "reranked": self.reranked,
                **provenance, "results": results,
                **({"queries": self.queries, "queries_trial": self.queries_trial} if self.queries else {})}

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self, title: str | None = None) -> Table:
        trials = f", mean of {self.trials} trials" if self.trials > 1 else ""
        title = title or f"{self.dataset} ({self.protocol} protocol{trials}), %"
        table = Table(title=title + (", k-reciprocal re-ranked" if self.reranked else ""))
        table.add_column("direction", no_wrap=True)
        for key in METRIC_KEYS:
            table.add_column(key, justify="right")
        for direction in self.results:
            mean, spread = self.mean(direction), self.std(direction)
            cells = [f"{mean[k]:.2f}" + (f" ±{spread[k]:.2f}" if spread else "") for k in METRIC_KEYS]
            table.add_row(DIRECTION_TITLES.get(direction, direction), *cells)
        return table
