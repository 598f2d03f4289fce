"""Weight files: reading them, taking the state dict out of its wrappers, comparing keys, unwrapping models."""
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from reid.engine.compile import EagerFallback
from reid.models.weights import (
    CheckpointError,
    CheckpointMismatchError,
    check_state_dict,
    error_summary,
    read_weights,
    state_dict_from,
    unwrap_model,
)


def test_read_weights_reads_torch_and_safetensors_files(tmp_path):
    weights = {"a": torch.ones(2), "b": torch.zeros(3)}
    torch.save(weights, tmp_path / "w.pth")
    save_file(weights, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        loaded = read_weights(tmp_path / name)
        assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], weights["a"])


def test_missing_damaged_and_executable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: no such file"):
        read_weights(tmp_path / "nope.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth: not a readable checkpoint"):
        read_weights(tmp_path / "bad.pth")

    class Payload:  # a pickle that would run code: weights_only refuses it
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth: not a readable checkpoint") as caught:
        read_weights(tmp_path / "evil.pth")
    assert "weights_only=False" not in str(caught.value)  # never advise the unsafe load


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict", "model_ema", "state_dict_ema"])
def test_the_state_dict_comes_out_of_its_wrapper(wrapper):
    weights = {"module._orig_mod.layer.weight": torch.ones(1)}
    found = state_dict_from(weights if wrapper is None else {wrapper: weights, "epoch": 3})
    assert list(found) == ["layer.weight"]  # DDP and torch.compile prefixes removed


def test_ema_weights_win_and_non_mappings_are_refused():
    assert torch.equal(state_dict_from({"model": {"w": torch.zeros(1)}, "model_ema": {"w": torch.ones(1)}})["w"],
                       torch.ones(1))
    with pytest.raises(CheckpointError, match="expected a state dict, got a list"):
        state_dict_from([1, 2])


def test_a_mismatch_lists_missing_unexpected_and_wrongly_shaped_keys():
    model = {"a": torch.zeros(2), "b": torch.zeros(3), "head.weight": torch.zeros(5)}
    given = {"a": torch.zeros(4), "c": torch.zeros(1), "head.weight": torch.zeros(9)}
    with pytest.raises(CheckpointMismatchError) as caught:
        check_state_dict(given, model, ignore_prefixes=["head."], source="w.pth")
    assert str(caught.value) == ("w.pth does not match the model; 1 missing: b; 1 unexpected: c; "
                                 "1 wrong shape: a (4,) vs model (2,)")
    check_state_dict(dict(model), model)  # a match is silent


def test_unwrap_model_sees_through_ddp_compile_and_the_eager_fallback():
    model = nn.Linear(2, 2)
    compiled = torch.compile(model, backend="eager")
    assert unwrap_model(compiled) is model
    assert unwrap_model(EagerFallback(compiled, compiled, "default")) is model
    holder = nn.Module()
    holder.module = compiled  # as DistributedDataParallel holds it
    assert unwrap_model(holder) is model


def test_error_summaries_are_one_line():
    error = RuntimeError("first line\nsecond line\n  more")
    assert error_summary(error) == "RuntimeError: first line"
    assert error_summary(ValueError("")) == "ValueError"
