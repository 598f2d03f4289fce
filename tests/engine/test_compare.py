import json

import pytest
from typer.testing import CliRunner

from cli import app
from reid.data import load_dataset
from reid.engine.compare import run_comparison
from reid.engine.evaluate import evaluate_dataset
from reid.engine.inference import Embedder

pytestmark = pytest.mark.slow


def test_compare_two_backbones_end_to_end(tiny_config, tmp_path):
    config = tiny_config(epochs=1)
    out = tmp_path / "compare"
    rows = run_comparison(config, ["attnet_xxs", "resnet18"], out, trials=2)
    for name in ("comparison.md", "comparison.csv", "comparison.json", "comparison.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "comparison.json").read_text())
    assert [b["backbone"] for b in data["backbones"]] == ["attnet_xxs", "resnet18"] and data["trials"] == 2
    dataset = load_dataset("llcm", config.data_root)
    for row in rows:
        assert row.params > 0 and row.macs > 0 and row.inference_images_per_second > 0
        assert row.training_images_per_second > 0
        embedder = Embedder.from_checkpoint(out / row.backbone / "best.pt", num_workers=0)
        expected = evaluate_dataset(embedder, dataset, trials=2).report
        for direction in ("ir2vis", "vis2ir"):
            for key in ("rank1", "rank5", "rank20", "mAP", "mINP"):
                assert row.metrics[direction][key] == round(expected.mean(direction)[key], 2)
    table = (out / "comparison.md").read_text()
    assert "| attnet_xxs | 64x32 |" in table and "ir2vis_mAP" in table
    # on a CPU the training-step memory is not measured, and the table says so instead of printing 0.0
    assert all(row.training_peak_memory_mb is None for row in rows)
    assert "training_peak_MB is measured on CUDA only" in table and "| 0.0 |" not in table

    # a second run trains nothing and re-evaluates nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = run_comparison(config, ["attnet_xxs", "resnet18"], out, trials=2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    assert [r.metrics for r in again] == [r.metrics for r in rows]

    from_checkpoints = run_comparison(config, ["attnet_xxs"], tmp_path / "again", train=False, checkpoints=out,
                                      trials=2)
    assert from_checkpoints[0].metrics == rows[0].metrics


def test_compare_cli_refuses_ambiguous_modes(tiny_config, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config().to_yaml())
    runner = CliRunner()
    both = runner.invoke(app, ["compare", "--config", str(config), "--backbones", "attnet_xxs", "--output-dir",
                               str(tmp_path / "o"), "--train", "--checkpoints", str(tmp_path)])
    assert both.exit_code == 2 and "exactly one of --train and --checkpoints" in both.stderr
    missing = runner.invoke(app, ["compare", "--config", str(config), "--backbones", "attnet_xxs", "--output-dir",
                                  str(tmp_path / "o"), "--checkpoints", str(tmp_path)])
    assert missing.exit_code == 2 and "no checkpoint for attnet_xxs" in missing.stderr
