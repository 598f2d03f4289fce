import json

import numpy as np
import pytest
from rich.console import Console

from reid.metrics import RankResult
from reid.report import EvaluationReport


def result(rank1: float, mAP: float) -> RankResult:
    """A result from fractions, held in percent as RankResult holds them."""
    return RankResult(100 * np.array([rank1] + [1.0] * 19), 100 * mAP, 100 * mAP / 2, 10)


def test_json_schema_with_trials_and_directions(tmp_path):
    report = EvaluationReport("llcm", "llcm")
    for trial_rank1, trial_map in ((0.5, 0.4), (0.7, 0.6)):
        report.add("ir2vis", result(trial_rank1, trial_map))
        report.add("vis2ir", result(trial_rank1 / 2, trial_map / 2))
    data = json.loads(report.save_json(tmp_path / "m.json").read_text())
    assert data["dataset"] == "llcm" and data["protocol"] == "llcm" and data["trials"] == 2
    ir2vis = data["results"]["ir2vis"]
    assert set(ir2vis) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "std"}
    assert ir2vis["rank1"] == pytest.approx(60.0) and ir2vis["mAP"] == pytest.approx(50.0)
    assert ir2vis["std"]["rank1"] == pytest.approx(np.std([50, 70], ddof=1), abs=1e-4)
    assert data["results"]["vis2ir"]["mINP"] == pytest.approx(12.5)


def test_single_trial_has_no_std_and_short_curves_saturate():
    report = EvaluationReport("regdb", "regdb")
    report.add("vis2ir", RankResult(np.array([25.0, 100.0, 100.0]), 50.0, 25.0, 4))
    data = report.to_dict()
    assert "std" not in data["results"]["vis2ir"]
    assert data["results"]["vis2ir"]["rank20"] == 100.0 and data["results"]["vis2ir"]["rank1"] == 25.0


def test_table_renders_both_directions():
    report = EvaluationReport("vcm", "vcm")
    report.add("ir2vis", result(0.5, 0.4))
    report.add("vis2ir", result(0.6, 0.5))
    console = Console(record=True, width=150)
    console.print(report.table())
    text = console.export_text()
    assert "ir -> vis" in text and "vis -> ir" in text and "50.00" in text
