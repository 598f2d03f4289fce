import csv
from pathlib import Path

import pytest
import torch

from reid.data import load_dataset
from reid.data.sampler import CrossModalityIdentitySampler
from reid.engine import trainer as trainer_module
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.trainer import NonFiniteLossError, RunDirectory, Trainer
from reid.errors import ReidError

pytestmark = pytest.mark.slow


def test_run_directory_has_every_artifact(tiny_config):
    config = tiny_config()
    report = Trainer(config).fit()
    root = RunDirectory(Path(config.output_dir))
    for path in (root.config, root.last, root.best, root.metrics, root.curves):
        assert path.is_file(), path
    rows = list(csv.DictReader(root.metrics.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss_total", "loss_id", "loss_triplet_cross", "loss_triplet_batch", "lr", "images_per_second",
            "ir2vis_mAP", "vis2ir_rank1"} <= set(rows[0])
    checkpoint = RunCheckpoint.load(root.last)
    assert checkpoint.epoch == 2 and checkpoint.backbone == "attnet_xxs"
    assert checkpoint.input_size == (64, 32) and "optimizer" in checkpoint.state
    assert set(report.results) == {"ir2vis", "vis2ir"}
    assert root.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_run_resumes_to_the_same_result(tiny_config, tmp_path, monkeypatch):
    reference = tiny_config(output_dir=str(tmp_path / "straight"), epochs=3, eval_every=3)
    Trainer(reference).fit()

    interrupted = tiny_config(output_dir=str(tmp_path / "resumed"), epochs=3, eval_every=3)
    samples = load_dataset("llcm", interrupted.data_root).train()
    steps = len(CrossModalityIdentitySampler(samples, interrupted.batch_identities, interrupted.batch_instances))
    calls = {"n": 0}
    real = trainer_module.weighted_sum

    def stop_in_epoch_two(named, weights):
        calls["n"] += 1
        if calls["n"] == steps + 2:  # the second step of epoch 2
            raise KeyboardInterrupt
        return real(named, weights)

    monkeypatch.setattr(trainer_module, "weighted_sum", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted).fit()
    assert RunCheckpoint.load(tmp_path / "resumed/last.pt").epoch == 1
    monkeypatch.setattr(trainer_module, "weighted_sum", real)
    Trainer(interrupted, resume=True).fit()

    straight = RunCheckpoint.load(tmp_path / "straight/last.pt").state
    resumed = RunCheckpoint.load(tmp_path / "resumed/last.pt").state
    assert resumed["epoch"] == straight["epoch"] == 3
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [row["loss_total"] for row in resumed["history"]] == [row["loss_total"] for row in straight["history"]]


def test_resume_refuses_a_different_model(tiny_config):
    Trainer(tiny_config(epochs=1)).fit()
    with pytest.raises(ReidError, match="cannot change: backbone \\('attnet_xxs' -> 'attnet_xs'\\)"):
        Trainer(tiny_config(epochs=2, backbone="attnet_xs"), resume=True).fit()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, monkeypatch):
    config = tiny_config(epochs=3, eval_every=5)
    real = trainer_module.weighted_sum
    calls = {"n": 0}

    def poisoned(named, weights):
        calls["n"] += 1
        total = real(named, weights)
        return total * float("nan") if calls["n"] > calls["limit"] else total

    monkeypatch.setattr(trainer_module, "weighted_sum", poisoned)
    samples = load_dataset("llcm", config.data_root).train()
    steps = len(CrossModalityIdentitySampler(samples, config.batch_identities, config.batch_instances))
    calls["limit"] = steps + 1
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 2: the loss is nan .*last.pt keeps the last good"):
        Trainer(config).fit()
    assert RunCheckpoint.load(f"{config.output_dir}/last.pt").epoch == 1


def test_video_training_and_evaluation_on_tracklets(tiny_vcm, tiny_config):
    config = tiny_config(dataset="vcm", data_root=str(tiny_vcm), seq_len=4, batch_identities=2, epochs=1)
    report = Trainer(config).fit()
    assert report.trials == 1 and set(report.results) == {"ir2vis", "vis2ir"}
    checkpoint = RunCheckpoint.load(f"{config.output_dir}/last.pt")
    model = checkpoint.model()
    assert checkpoint.config.seq_len == 4
    with torch.no_grad():
        assert model(torch.randn(2, 4, 3, 64, 32)).embeddings.shape == (2, 240)


def test_torchrun_ddp_on_cpu(tiny_config, tmp_path):
    import os
    import subprocess
    import sys

    config = tiny_config(epochs=1, batch_identities=2)  # 2 ranks x 2 identities of the 5 training ones
    path = tmp_path / "ddp.yaml"
    path.write_text(config.to_yaml())
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "reid", "train", "--config", str(path)],
                            capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"},
                            cwd=tmp_path)  # from any directory
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("done:") == 1  # only rank 0 speaks
    assert "Grad strides do not match" not in result.stderr
    assert RunCheckpoint.load(Path(config.output_dir) / "last.pt").epoch == 1


def test_fixed_size_backbone_trains_at_its_native_size(tiny_config):
    # at 96x48 EfficientFormerV2 cannot run (its attention biases are sized for 224), at 64x32 it can
    config = tiny_config(backbone="efficientformerv2_s0", epochs=1, batch_identities=2, input_height=96,
                         input_width=48)
    report = Trainer(config).fit()
    assert RunCheckpoint.load(Path(config.output_dir) / "last.pt").input_size == (224, 224)
    assert set(report.results) == {"ir2vis", "vis2ir"}


def test_a_directory_with_a_run_is_not_trained_over(tiny_config):
    config = tiny_config(epochs=1)
    Trainer(config).fit()
    first = RunCheckpoint.load(Path(config.output_dir) / "last.pt").digest
    with pytest.raises(ReidError, match="already holds a run .*--resume.*--output-dir.*--overwrite"):
        Trainer(config).fit()
    assert RunCheckpoint.load(Path(config.output_dir) / "last.pt").digest == first  # untouched
    Trainer(config.model_copy(update={"seed": 5}), overwrite=True).fit()
    assert RunCheckpoint.load(Path(config.output_dir) / "last.pt").digest != first


def test_a_resume_applies_a_new_rate_and_says_so(tiny_config, tmp_path):
    """The advice after a NaN loss (a lower lr, then --resume) works: the resumed steps use the new rate."""
    from reid.engine.runtime import read_checkpoint

    config = tiny_config(output_dir=str(tmp_path / "run"), epochs=1, warmup_epochs=0, lr_schedule="step",
                         lr_steps=[50])
    Trainer(config).fit()
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    Trainer(config.model_copy(update={"epochs": 2, "lr": 1e-5}), resume=True, console=console).fit()
    assert "resuming with a changed setting: lr: 0.001 -> 1e-05" in console.file.getvalue()
    history = read_checkpoint(tmp_path / "run/last.pt", "reid")["history"]
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 1e-5])  # the step schedule's rate, from the new lr


def test_a_resume_extends_a_finished_cosine_schedule_and_says_so(tiny_config, tmp_path):
    from reid.engine.runtime import read_checkpoint

    config = tiny_config(output_dir=str(tmp_path / "run"), epochs=2, warmup_epochs=0, min_lr=1e-6)
    Trainer(config).fit()
    finished = read_checkpoint(tmp_path / "run/last.pt", "reid")["history"][-1]["lr"]
    assert finished == pytest.approx(1e-6)  # a finished cosine sits at min_lr
    Trainer(config.model_copy(update={"epochs": 4}), resume=True).fit()
    history = read_checkpoint(tmp_path / "run/last.pt", "reid")["history"]
    assert len(history) == 4 and history[2]["lr"] > 10 * finished  # re-planned over 4 epochs, not stuck at min


def test_a_resume_on_other_data_is_a_one_line_error(tiny_config, tmp_path):
    from reid.data import make_dataset

    config = tiny_config(output_dir=str(tmp_path / "run"), epochs=1)
    Trainer(config).fit()
    other = make_dataset("llcm", tmp_path / "other", 12, seed=5)
    with pytest.raises(ReidError, match="was trained on 5 identities, but .* has 7 training identities"):
        Trainer(config.model_copy(update={"data_root": str(other), "epochs": 2}), resume=True).fit()


def test_a_validation_split_chooses_best_pt_without_looking_at_the_test_set(tiny_config, monkeypatch):
    from reid.data.validation import ValidationSet

    config = tiny_config(val_identities=1, epochs=2, eval_every=1)  # 5 training identities: 4 left, one batch
    evaluated = []
    original = trainer_module.evaluate_dataset

    def spy(embedder, dataset, **options):
        evaluated.append(dataset)
        return original(embedder, dataset, **options)

    monkeypatch.setattr(trainer_module, "evaluate_dataset", spy)
    Trainer(config).fit()
    root = RunDirectory(Path(config.output_dir))
    rows = list(csv.DictReader(root.metrics.open()))
    assert {"val_ir2vis_mAP", "val_vis2ir_rank1"} <= set(rows[0]) and "ir2vis_mAP" not in rows[0]
    assert len(evaluated) == 2 and all(isinstance(dataset, ValidationSet) for dataset in evaluated)
    held = {s.pid for s in evaluated[0].samples}
    training = {s.pid for s in load_dataset("llcm", config.data_root).train()}
    assert len(held) == 1 and held <= training
    best = RunCheckpoint.load(root.best)
    assert best.num_classes == len(training) - 1  # the held-out identity was not trained on
    assert best.best == pytest.approx(max(float(r["val_ir2vis_mAP"]) for r in rows), abs=1e-3)
    assert "validation: 1 training identity held out" in root.log.read_text()


@pytest.mark.parametrize("direction", ["vis2ir", "ir2vis"])
def test_best_pt_is_chosen_on_the_configured_direction(tiny_config, direction):
    """LLCM's AGW baseline chooses its epoch on visible -> infrared, mangye16's on thermal -> visible: best.pt holds
    the best of the configured search's metric."""
    config = tiny_config(epochs=3, eval_every=1, best_direction=direction, best_metric="rank1")
    Trainer(config).fit()
    root = RunDirectory(Path(config.output_dir))
    rows = list(csv.DictReader(root.metrics.open()))
    best = RunCheckpoint.load(root.best)
    scores = [float(row[f"{direction}_rank1"]) for row in rows]
    assert best.best == pytest.approx(max(scores), abs=1e-3)
    assert best.epoch == 1 + scores.index(max(scores))  # the first epoch that reached it


def test_too_many_validation_identities_is_a_one_line_error(tiny_config):
    with pytest.raises(ReidError, match=r"val_identities: 2 is too many; the training set has 5 identities"):
        Trainer(tiny_config(val_identities=2)).fit()  # 3 would be left, and a batch takes 4
