"""The demo end to end, through the command line, on a tiny dataset (a minute of CPU)."""
import json

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from reid.cli import app
from reid.data import load_dataset
from reid.engine.demo import DEMO_TRIALS
from reid.index import Gallery

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_and_writes_what_it_says(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(dict(
        dataset="llcm", data_root="unused", backbone="attnet_xxs", input_height=64, input_width=32, augment_pad=2,
        epochs=2, eval_every=2, batch_identities=4, batch_instances=2, warmup_epochs=0, lr=3e-3, num_workers=0)))
    data, run = tmp_path / "data", tmp_path / "run"
    make = CliRunner().invoke(app, ["data", "make-demo", "--layout", "llcm", "--out", str(data), "--ids", "8"])
    assert make.exit_code == 0, make.output
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(data), "--output-dir", str(run), "--config",
                                      str(config), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for stage in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert stage in result.stdout
    assert "mAP untrained -> trained: ir2vis" in result.stdout
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "metrics.json", "rank_lists.png", "query.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trials"] == DEMO_TRIALS and set(metrics["results"]) == {"ir2vis", "vis2ir"}
    queries = load_dataset("llcm", data).test_split("vis2ir", 0).query
    assert len(metrics["queries"]["vis2ir"]) == len(queries)  # what reid serve --evaluation shows
    # the figure quoted at the end is the one in metrics.json
    assert f"-> {metrics['results']['ir2vis']['mAP']:.1f}%" in result.stdout.replace("\n", " ")

    gallery = Gallery.load(run / "gallery")
    dataset = load_dataset("llcm", data)
    sides = {"vis": len(dataset.test_split("ir2vis", 0).gallery), "ir": len(dataset.test_split("vis2ir", 0).gallery)}
    assert gallery.counts_by_modality() == sides and gallery.manifest.backbone == "attnet_xxs"  # both sides
    assert gallery.manifest.extra == {"dataset": "llcm"}  # what reid serve checks an evaluation report against
    assert Image.open(run / "rank_lists.png").size[0] > Image.open(run / "query.png").size[0]  # two panels
    assert metrics["command"].startswith("reid demo --data-dir ")  # what was typed, however the tests were started


def test_running_the_demo_again_keeps_the_previous_run_whole(tmp_path, monkeypatch):
    from reid.engine import demo as demo_module

    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(dict(
        dataset="llcm", data_root="unused", backbone="attnet_xxs", input_height=32, input_width=16, augment_pad=2,
        epochs=1, batch_identities=4, batch_instances=2, warmup_epochs=0, num_workers=0)))
    data, run = tmp_path / "data", tmp_path / "run"
    CliRunner().invoke(app, ["data", "make-demo", "--layout", "llcm", "--out", str(data), "--ids", "8"])
    command = ["demo", "--data-dir", str(data), "--output-dir", str(run), "--config", str(config), "--device", "cpu"]
    assert CliRunner().invoke(app, command).exit_code == 0
    first = (run / "metrics.json").read_bytes()

    class Interrupted:  # stops when training starts
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(demo_module, "Trainer", Interrupted)
    stopped = CliRunner().invoke(app, command)
    assert stopped.exit_code == 130 and "interrupted; run reid demo again to start over" in stopped.stderr
    assert (tmp_path / "run.previous/metrics.json").read_bytes() == first  # the complete run, whole
    assert not (run / "metrics.json").exists()  # nothing of the old run mixed into the new directory
