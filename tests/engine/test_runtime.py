"""The runtime every training loop shares: the step, the clock, the resume hint."""
import time

import pytest
import torch

from reid.config import make_config
from reid.engine.runtime import (
    NonFiniteLossError,
    Optimisation,
    RunDirectory,
    StepClock,
    describe,
    duration,
    epoch_seed,
    resolve_amp,
    resolve_device,
    resume_hint,
)
from reid.errors import ReidError


def config(tmp_path, **changes):
    return make_config(dict(dataset="llcm", data_root=str(tmp_path), output_dir=str(tmp_path / "run"), epochs=4)
                       | changes)


def test_the_resume_hint_says_what_was_kept(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert resume_hint(run, "train") == f"no epoch finished, so there is nothing to resume in {run.root}"


def test_a_non_finite_loss_stops_before_any_weight_changes(tmp_path):
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = type("Fixed", (), {"step_update": lambda self, update: None})()
    step = Optimisation(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), advice="lower lr")
    loss = model(torch.ones(1, 2)).sum() * float("nan")
    with pytest.raises(NonFiniteLossError, match="epoch 3, step 1: the loss is nan \\(id nan\\); the run stopped and "
                                                 ".*last.pt keeps the last good epoch. Lower lr"):
        step.step(loss, {"id": loss}, 1, "epoch 3, step 1", tmp_path / "last.pt")
    assert torch.equal(model.weight, before)


def test_the_clock_measures_the_first_steps_extra_time():
    clock = StepClock()
    for seconds in (0.05, 0.01, 0.01, 0.0, 0.0, 0.0, 0.0):
        clock.got_batch()
        time.sleep(seconds)
        clock.stepped(8)
    assert 0.05 <= clock.first_steps_extra() <= 0.2
    row = clock.row()
    assert set(row) == {"samples_per_second", "seconds", "data_wait"} and row["samples_per_second"] > 0


def test_the_epoch_line_names_what_was_trained_on():
    row = {"loss_total": 1.23456, "tracklets_per_second": 12.34, "data_wait": 0.1, "seconds": 61.2,
           "compile_seconds": 41.4}
    assert describe(row) == "loss 1.2346, 12.3 tracklets/s (10% waiting for data), compiled in 41 s, 61 s"
    assert (duration(12), duration(245), duration(7380)) == ("12 s", "4m 05s", "2h 03m")


def test_devices_amp_and_epoch_seeds():
    assert resolve_device("cpu").type == "cpu" and resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("fp16", torch.device("cpu")) == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(ReidError, match="--device cuda: no CUDA device is available"):
            resolve_device("cuda")
    assert epoch_seed(0, 3) == epoch_seed(0, 3) != epoch_seed(0, 4) != epoch_seed(1, 3)
