"""End-to-end command-line workflows on a tiny synthetic dataset (training takes seconds)."""
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from reid.cli import app
from reid.data import load_dataset, make_dataset
from reid.engine.evaluate import evaluate_dataset
from reid.engine.inference import Embedder

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset, a config and a one-epoch run trained through the CLI."""
    base = tmp_path_factory.mktemp("workflow")
    root = make_dataset("llcm", base / "LLCM", 8, seed=3)
    config = base / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(
        dataset="llcm", data_root=str(root), output_dir=str(base / "run"), backbone="attnet_xxs", input_height=64,
        input_width=32, augment_pad=2, epochs=1, batch_identities=4, batch_instances=2, warmup_epochs=0,
        num_workers=0)))
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("training attnet_xxs on llcm") == 1  # said once, by the trainer
    return root, config, base / "run"


def test_train_writes_the_run(trained):
    _, _, run = trained
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "last.pt", "best.pt", "metrics.csv", "curves.png"}


def test_evaluate_from_the_checkpoint_alone(trained, tmp_path):
    root, _, run = trained
    output = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                 "--data-root", str(root), "--trials", "3", "--output", str(output),
                                 "--num-workers", "0", "--visualize", str(tmp_path / "ranks.png")])
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    assert data["trials"] == 3 and set(data["results"]) == {"ir2vis", "vis2ir"}
    assert set(data["results"]["ir2vis"]["std"]) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    embedder = Embedder.from_checkpoint(run / "best.pt", num_workers=0)
    expected = evaluate_dataset(embedder, load_dataset("llcm", root), trials=3).report.to_dict()
    assert data["results"] == expected["results"]
    assert (tmp_path / "ranks.png").read_bytes()[:4] == b"\x89PNG"
    assert "ir -> vis" in result.stdout


def test_evaluate_a_bare_backbone_baseline(trained):
    root, _, _ = trained
    result = runner.invoke(app, ["evaluate", "--backbone", "attnet_xxs", "--input-size", "64x32", "--dataset",
                                 "llcm", "--data-root", str(root), "--trials", "1", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert "untrained for re-ID" in result.stdout


def test_index_build_query_add_remove_info(trained, tmp_path):
    root, _, run = trained
    gallery = tmp_path / "gallery"
    checkpoint = ["--checkpoint", str(run / "best.pt")]
    built = runner.invoke(app, ["index", "build", *checkpoint, "--dataset", "llcm", "--data-root", str(root),
                                "--split", "gallery", "--out", str(gallery)])
    assert built.exit_code == 0, built.output
    query = sorted((root / "test_nir").rglob("*.jpg"))[0]
    result = runner.invoke(app, ["index", "query", "--index", str(gallery), *checkpoint, "--image", str(query),
                                 "--top-k", "3", "--json", "--visualize", str(tmp_path / "q.png")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["rank"] for line in lines] == [1, 2, 3]
    assert set(lines[0]) == {"query", "rank", "score", "item_id", "path", "pid", "camid", "modality"}
    assert lines[0]["modality"] == "vis" and lines[0]["score"] >= lines[1]["score"]
    added = runner.invoke(app, ["index", "add", "--index", str(gallery), *checkpoint, "--images", str(query),
                                "--label", "new"])
    assert added.exit_code == 0, added.output
    removed = runner.invoke(app, ["index", "remove", "--index", str(gallery), str(query)])
    assert removed.exit_code == 0 and "removed 1 items" in removed.stdout
    info = runner.invoke(app, ["index", "info", "--index", str(gallery)])
    manifest = json.loads(info.stdout)
    assert manifest["backbone"] == "attnet_xxs" and manifest["removed"] == 1 and manifest["index"]["type"] == "flat"
    live = manifest["items"]
    compacted = runner.invoke(app, ["index", "compact", "--index", str(gallery)])
    assert compacted.exit_code == 0 and "1 removed items dropped" in compacted.stdout, compacted.output
    manifest = json.loads(runner.invoke(app, ["index", "info", "--index", str(gallery)]).stdout)
    assert manifest["removed"] == 0 and manifest["items"] == live and manifest["checkpoint_digest"]
    wrong = runner.invoke(app, ["index", "query", "--index", str(gallery), "--backbone", "attnet_xxs",
                                "--input-size", "64x32", "--image", str(query)])
    assert wrong.exit_code == 2 and "the query model does not match the gallery: checkpoint" in wrong.stderr


def test_the_engines_build_the_same_gallery_and_rank_alike(trained, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from ranking import assert_top_k_up_to_ties

    from reid.index.gallery import Gallery

    root, _, run = trained
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    arrays = {}
    for engine in ("torch", "onnxruntime"):
        built = runner.invoke(app, ["index", "build", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                    "--data-root", str(root), "--split", "gallery", "--out", str(tmp_path / engine),
                                    "--engine", engine, "--num-workers", "0"])
        assert built.exit_code == 0, built.output
        index = Gallery.load(tmp_path / engine).index
        arrays[engine] = index.reconstruct_n(0, index.ntotal)
    assert abs(arrays["torch"] - arrays["onnxruntime"]).max() < 1e-4
    assert list((run / ".reid-onnx").glob("best-*-64x32.onnx"))  # kept beside the checkpoint for the next command
    queries, onnx_vectors = arrays["torch"][:5], arrays["onnxruntime"]
    found = (-(onnx_vectors[:5] @ onnx_vectors.T)).argsort(axis=1)[:, :10]
    assert_top_k_up_to_ties(found, queries, arrays["torch"], 10, atol=2e-4)  # ONNX Runtime's order is PyTorch's
    monkeypatch.setenv("REID_ENGINE", "tensorrt")
    wrong = runner.invoke(app, ["index", "build", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                "--data-root", str(root), "--split", "gallery", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "tensorrt" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_visualize(trained, tmp_path):
    root, _, run = trained
    result = runner.invoke(app, ["visualize", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                 "--data-root", str(root), "--output", str(tmp_path / "v.png"), "--queries", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v.png").stat().st_size > 1000


def test_user_errors_exit_2_with_one_line(trained, tmp_path):
    root, config, run = trained
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text() + "learning_rate: 0.1\n")
    cases = [
        (["train", "--config", str(bad)], "unknown key 'learning_rate'"),
        (["train", "--config", str(config), "--data-root", str(tmp_path / "nope"), "--output-dir",
          str(tmp_path / "fresh")], "data_root: no such directory"),
        (["train", "--config", str(config), "--batch-size", "10"], "--batch-size must be a multiple of"),
        (["evaluate", "--dataset", "llcm", "--data-root", str(root)], "give either --checkpoint or --backbone"),
        (["evaluate", "--checkpoint", str(tmp_path / "x.pt"), "--dataset", "llcm", "--data-root", str(root)],
         "x.pt: no such file"),
        (["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm", "--data-root", str(root),
          "--direction", "up"], "error: Invalid value for '--direction': 'up' is not one of 'ir2vis', 'vis2ir', "
                                "'both'"),
        (["index", "query", "--index", str(tmp_path), "--backbone", "attnet_xxs", "--image", str(bad)],
         "not a gallery"),
    ]
    weights = tmp_path / "imagenet.pth"
    torch.save({"model": {}}, weights)
    cases.append((["evaluate", "--checkpoint", str(weights), "--dataset", "llcm", "--data-root", str(root)],
                  "not a reid training checkpoint"))
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_evaluate_through_an_exact_faiss_gallery_gives_the_same_metrics(trained, tmp_path):
    root, _, run = trained
    outputs = {}
    for flag in ([], ["--use-index"]):
        path = tmp_path / f"m{len(flag)}.json"
        result = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                     "--data-root", str(root), "--trials", "2", "--output", str(path),
                                     "--num-workers", "0", *flag])
        assert result.exit_code == 0, result.output
        outputs[len(flag)] = json.loads(path.read_text())["results"]
    for direction in ("ir2vis", "vis2ir"):
        for key, value in outputs[0][direction].items():
            if key != "std":
                assert outputs[1][direction][key] == pytest.approx(value, abs=1e-3), (direction, key)


def test_faults_a_careful_user_hits_are_one_line_errors(trained, tmp_path, monkeypatch):
    root, config, run = trained
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    from reid.engine import evaluate as evaluate_module

    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before the output path was checked")

    monkeypatch.setattr(evaluate_module, "evaluate_dataset", never)
    image = sorted((root / "test_nir").rglob("*.jpg"))[0]
    cases = [
        (["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm", "--data-root", str(root),
          "--output", str(blocker / "m.json")], f"{blocker / 'm.json'}: cannot be written"),
        (["train", "--config", str(config)], "already holds a run"),
        (["data", "make-demo", "--layout", "llcm", "--out", str(tmp_path / "d"), "--ids", "0"],
         "Invalid value for '--ids': Input should be greater than or equal to 4"),
        (["data", "make-demo", "--layout", "regdb", "--out", str(blocker / "d"), "--ids", "4"],
         "cannot write the dataset"),
        (["index", "add", "--index", str(tmp_path), "--checkpoint", str(run / "best.pt"), "--images", str(image),
          "--modality", "bogus"], "Invalid value for '--modality': 'bogus' is not one of 'vis', 'ir'"),
        (["index", "build", "--checkpoint", str(run / "best.pt"), "--images", str(image), "--out",
          str(blocker / "g")], "cannot"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_adding_an_image_twice_keeps_one_item(trained, tmp_path, monkeypatch):
    root, _, run = trained
    gallery = tmp_path / "g"
    image = sorted((root / "test_nir").rglob("*.jpg"))[0]
    checkpoint = ["--checkpoint", str(run / "best.pt")]
    assert runner.invoke(app, ["index", "build", *checkpoint, "--images", str(image), "--out", str(gallery)]
                         ).exit_code == 0
    monkeypatch.chdir(image.parent)
    again = runner.invoke(app, ["index", "add", "--index", str(gallery), *checkpoint, "--images", image.name])
    assert again.exit_code == 0 and "added 0 items (1 already in the gallery)" in again.stdout, again.output
    removed = runner.invoke(app, ["index", "remove", "--index", str(gallery), image.name])  # relative to the cwd
    assert removed.exit_code == 0 and "removed 1 items; 0 remain" in removed.stdout, removed.output


def test_evaluate_says_what_ran(trained):
    root, _, run = trained
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                 "--data-root", str(root), "--trials", "1000", "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    assert "LLCM's protocol has 10 gallery trials; evaluating 10, not 1000" in result.stderr.replace("\n", " ")
    assert "mean of 10 trials" in result.stdout or "±" in result.stdout


def test_sigterm_stops_training_with_a_resume_hint(trained, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    _, config, _ = trained
    long_run = tmp_path / "long.yaml"
    values = yaml.safe_load(config.read_text()) | {"output_dir": str(tmp_path / "run"), "epochs": 200}
    long_run.write_text(yaml.safe_dump(values))
    process = subprocess.Popen([sys.executable, "-m", "reid", "train", "--config", str(long_run)],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (tmp_path / "run/last.pt").is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    from reid.engine.checkpoint import RunCheckpoint

    epoch = RunCheckpoint.load(tmp_path / "run/last.pt").epoch
    hint = f"terminated (SIGTERM); {tmp_path / 'run/last.pt'} keeps epoch {epoch}. Continue with: "
    assert hint in stderr and "Traceback" not in stderr and epoch >= 1
    # the hint alone continues the run as it was configured (the run's own config.yaml), toward its 200 epochs
    command = stderr.split("Continue with: ")[1].split()
    assert command == ["reid", "train", "--output-dir", str(tmp_path / "run"), "--resume"]
    resumed = runner.invoke(app, [*command[1:], "--epochs", str(epoch + 1)])  # shortened, and said so
    assert resumed.exit_code == 0, resumed.output
    said = resumed.stdout.replace("\n", " ")
    assert f"resuming with a changed setting: epochs: 200 -> {epoch + 1}" in said
    assert f"resuming {tmp_path / 'run'} after epoch {epoch}" in said
    assert RunCheckpoint.load(tmp_path / "run/last.pt").epoch == epoch + 1


def test_train_with_overrides_writes_its_log_and_tensorboard(trained, tmp_path):
    _, config, _ = trained
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(config), "--output-dir", str(run), "--set", "epochs=2",
                                 "--set", "pretrained=null", "--set", "eval_every=2", "--tensorboard"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["pretrained"] is None and saved["tensorboard"] is True
    log = (run / "train.log").read_text()
    assert "epoch 1/2: loss" in log and "run ETA" in log and "epoch 2/2" in log and "ir -> vis" in log
    assert "run ETA 0 s" in log.splitlines()[-1] or "epoch 2/2" in log  # the last epoch has nothing left
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"loss_total", "lr", "ir2vis_mAP"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss_total")] == [1, 2]


def test_the_metrics_json_says_what_was_evaluated(trained, tmp_path):
    root, _, run = trained
    output = tmp_path / "m.json"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--dataset", "llcm",
                                 "--data-root", str(root), "--trials", "1", "--rerank", "--output", str(output),
                                 "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    from reid.engine.checkpoint import RunCheckpoint

    assert data["reranked"] is True and data["protocol"] == "llcm"
    assert data["model"] == {"backbone": "attnet_xxs", "checkpoint": str(run / "best.pt"),
                             "digest": RunCheckpoint.load(run / "best.pt").digest}
    assert data["command"] == f"reid evaluate --checkpoint {run / 'best.pt'} --dataset llcm --data-root {root} " \
                              f"--trials 1 --rerank --output {output} --num-workers 0"  # as typed
    assert "k-reciprocal re-ranked" in result.stdout.replace("\n", " ")


def test_gallery_camera_filters_and_known_labels(trained, tmp_path):
    root, _, run = trained
    gallery = tmp_path / "g"
    checkpoint = ["--checkpoint", str(run / "best.pt")]
    assert runner.invoke(app, ["index", "build", *checkpoint, "--dataset", "llcm", "--data-root", str(root),
                               "--out", str(gallery)]).exit_code == 0
    query = sorted((root / "test_nir").rglob("*.jpg"))[0]
    extra = sorted((root / "test_vis").rglob("*.jpg"))[-1]
    added = runner.invoke(app, ["index", "add", "--index", str(gallery), *checkpoint, "--images", str(extra),
                                "--pid", "4242", "--camid", "7"])
    assert added.exit_code == 0, added.output

    def hits(*options):
        result = runner.invoke(app, ["index", "query", "--index", str(gallery), *checkpoint, "--image", str(query),
                                     "--top-k", "50", "--json", *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    everything = hits()
    assert {h["camid"] for h in everything} > {2}
    assert {h["camid"] for h in hits("--camera", "2", "--camera", "7")} <= {2, 7}
    assert 2 not in {h["camid"] for h in hits("--exclude-camera", "2")}
    labelled = [h for h in everything if h["path"] == str(extra.resolve())]
    assert labelled and labelled[0]["pid"] == 4242 and labelled[0]["camid"] == 7
    # an image of unknown camera: in no camera list, excluded by no camera exclusion (the library's and the
    # service's rule too)
    unknown = tmp_path / "unknown.jpg"
    unknown.write_bytes(query.read_bytes())
    assert runner.invoke(app, ["index", "add", "--index", str(gallery), *checkpoint, str(unknown)]).exit_code == 0
    assert str(unknown.resolve()) in {h["path"] for h in hits("--exclude-camera", "2") if h["camid"] is None}
    assert str(unknown.resolve()) not in {h["path"] for h in hits("--camera", "2", "--camera", "7")}


def test_concurrent_writers_readers_builds_and_trainings_lose_nothing(trained, tmp_path):
    """Adds, a removal, a compaction and a build race on one gallery while this process keeps reading it; two
    trainings race for one run directory."""
    import os
    import subprocess
    import sys

    from reid.index import Gallery

    root, config, run = trained
    gallery = tmp_path / "g"
    model = ["--checkpoint", str(run / "best.pt"), "--device", "cpu"]
    built = runner.invoke(app, ["index", "build", *model, "--dataset", "llcm", "--data-root", str(root), "--out",
                                str(gallery)])
    assert built.exit_code == 0, built.output
    before = Gallery.load(gallery)
    removed = before.table.paths[0]
    new = [str(p) for p in sorted((root / "train_vis").rglob("*.jpg"))[:6]]
    reid = [sys.executable, "-m", "reid"]
    train = [*reid, "train", "--config", str(config), "--output-dir", str(tmp_path / "race"), "--epochs", "3"]
    commands = {
        "add-1": [*reid, "index", "add", "--index", str(gallery), *model, *new[:3]],
        "add-2": [*reid, "index", "add", "--index", str(gallery), *model, *new[3:]],
        "remove": [*reid, "index", "remove", "--index", str(gallery), removed],
        "compact": [*reid, "index", "compact", "--index", str(gallery)],
        "build": [*reid, "index", "build", *model, "--images", new[0], "--out", str(gallery)],
        "train-1": train, "train-2": train,
    }
    environment = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    processes = {name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=environment) for name, command in commands.items()}
    loads = 0
    while any(process.poll() is None for process in processes.values()):
        gallery_now = Gallery.load(gallery)  # a reader never sees an error or half a save
        assert gallery_now.index.ntotal == len(gallery_now.table)
        loads += 1
    outputs = {name: process.communicate() for name, process in processes.items()}
    codes = {name: process.returncode for name, process in processes.items()}
    for name in ("add-1", "add-2", "remove", "compact"):
        assert codes[name] == 0, (name, outputs[name][1])
    assert codes["build"] == 2 and "already holds a gallery" in outputs["build"][1]  # no --overwrite: refused
    assert sorted([codes["train-1"], codes["train-2"]]) == [0, 2]
    refused = outputs["train-1" if codes["train-1"] else "train-2"][1]
    assert "is in use by process" in refused and "Traceback" not in refused
    after = Gallery.load(gallery)
    live = {row["path"] for row in after.table.rows() if not row["removed"]}
    assert live == ({row["path"] for row in before.table.rows()} - {removed}) | {os.path.abspath(p) for p in new}
    assert loads > 0


def test_the_faults_of_an_attacker_are_one_line_errors(trained, tmp_path):
    import os

    import torch

    from reid.engine.checkpoint import RunCheckpoint

    root, config, run = trained
    model = ["--checkpoint", str(run / "best.pt")]
    image = sorted((root / "test_nir").rglob("*.jpg"))[0]
    gallery = tmp_path / "g"
    assert runner.invoke(app, ["index", "build", *model, "--images", str(image), "--out", str(gallery)]).exit_code == 0
    # a checkpoint whose weights went NaN: its embeddings are refused, not stored
    state = RunCheckpoint.load(run / "best.pt").state
    state["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, tmp_path / "nan.pt")
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image.read_bytes())
    os.mkfifo(folder / "pipe.jpg")  # a FIFO named like an image: never opened (it would block)
    cases = [
        (["index", "build", *model, "--images", str(image), "--out", str(gallery)], "already holds a gallery"),
        (["index", "build", "--checkpoint", str(tmp_path / "nan.pt"), "--images", str(image), "--out",
          str(tmp_path / "g2")], "embeddings are not finite (NaN or infinite)"),
        (["index", "add", "--index", "/", *model, str(image)], "--index /: not a gallery"),
        (["index", "query", "--index", str(gallery), *model, str(folder / "pipe.jpg")], "not a regular file"),
        (["evaluate", *model, "--dataset", "sysu", "--data-root", str(root), "--direction", "vis2ir"],
         "SYSU-MM01's official protocol has no vis2ir search"),
        (["train", "--config", str(config), "--output-dir", str(tmp_path / ("x" * 300))],
         "a name longer than 255 bytes"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    added = runner.invoke(app, ["index", "add", "--index", str(gallery), *model, str(folder)])
    assert added.exit_code == 0 and "added 1 items; the gallery now holds 2" in added.stdout  # the FIFO skipped
    rebuilt = runner.invoke(app, ["index", "build", *model, "--images", str(folder), "--out", str(gallery),
                                  "--overwrite"])
    assert rebuilt.exit_code == 0, rebuilt.output
