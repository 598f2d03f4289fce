import csv
from pathlib import Path

import pytest
import torch

from reid.data import load_dataset
from reid.data.sampler import CrossModalityIdentitySampler
from reid.engine import trainer as trainer_module
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.trainer import NonFiniteLossError, RunFiles, Trainer
from reid.errors import ReidError

pytestmark = pytest.mark.slow


def test_run_directory_has_every_artifact(tiny_config):
    config = tiny_config()
    report = Trainer(config).fit()
    root = RunFiles(Path(config.output_dir))
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
    with pytest.raises(trainer_module.ReidError, match="backbone \\('attnet_xxs' vs 'attnet_xs'\\)"):
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
        assert model(torch.randn(2, 4, 3, 64, 32)).bn_features.shape == (2, 240)


def test_torchrun_ddp_on_cpu(tiny_config, tmp_path):
    import os
    import subprocess
    import sys

    config = tiny_config(epochs=1, batch_identities=2)  # 2 ranks x 2 identities of the 5 training ones
    path = tmp_path / "ddp.yaml"
    path.write_text(config.to_yaml())
    torchrun = Path(sys.executable).with_name("torchrun")
    cli = Path(__file__).parents[2] / "cli.py"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(cli), "train", "--config", str(path)],
                            capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
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
