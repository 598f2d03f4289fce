"""torch.compile on a CPU, through the aot_eager backend: the same graph capture as on a GPU, without code
generation, so the tests check the plumbing (no recompilation, checkpoints without prefixes, the same numbers)."""
import pytest
import torch
import torch._dynamo

from reid.data.transforms import AugmentConfig, eval_pipeline
from reid.engine import compile as compile_module
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.compile import pad_batch, resolve_compile
from reid.engine.inference import extract_features
from reid.engine.trainer import Trainer
from reid.models.reid_model import ReIDModel

pytestmark = pytest.mark.slow


@pytest.fixture
def capture_only(monkeypatch):
    monkeypatch.setattr(compile_module, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    torch._dynamo.utils.guard_failures.clear()
    yield
    torch._dynamo.reset()


def recompile_reasons() -> list[str]:
    """Why dynamo compiled a function again (every reason but the switch between training and no-grad
    evaluation, which needs its own graph): a shape change here would mean a short batch was compiled."""
    reasons = [reason for failures in torch._dynamo.utils.guard_failures.values() for reason in failures]
    return [reason for reason in reasons if "grad_mode" not in reason]


def test_modes_resolve_per_device():
    assert resolve_compile("auto", "cuda") == "reduce-overhead" and resolve_compile("auto", "cpu") is None
    assert resolve_compile("off", "cuda") is None and resolve_compile("max-autotune", "cpu") == "max-autotune"
    with pytest.raises(ValueError, match="compile must be one of"):
        resolve_compile("fast", "cpu")


def test_pad_batch_repeats_the_last_row():
    (images, flags), count = pad_batch((torch.arange(6.0).view(3, 2), torch.tensor([True, False, True])), 5)
    assert count == 3 and images.tolist() == [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]]
    assert flags.tolist() == [True, False, True, True, True]
    assert pad_batch((torch.ones(5, 2),), 5)[1] == 5


@pytest.mark.parametrize("stems", [False, True])
def test_compiled_training_matches_eager_and_saves_plain_checkpoints(tiny_config, tmp_path, capture_only, stems):
    eager = tiny_config(output_dir=str(tmp_path / "eager"), epochs=1, compile="off", modality_stems=stems)
    compiled = tiny_config(output_dir=str(tmp_path / "compiled"), epochs=1, compile="default", modality_stems=stems)
    Trainer(eager).fit()
    Trainer(compiled).fit()
    eager_state = RunCheckpoint.load(tmp_path / "eager/last.pt").state
    compiled_state = RunCheckpoint.load(tmp_path / "compiled/last.pt").state
    assert set(compiled_state["model"]) == set(eager_state["model"])  # no _orig_mod. prefix
    assert compiled_state["history"][0]["loss_total"] == pytest.approx(eager_state["history"][0]["loss_total"],
                                                                       rel=1e-4)
    RunCheckpoint.load(tmp_path / "compiled/best.pt").model()  # loads without the compile wrapper
    assert recompile_reasons() == []


def test_compiled_embedding_pads_the_last_batch(tiny_llcm, capture_only):
    from reid.data import load_dataset

    samples = load_dataset("llcm", tiny_llcm).test_split("ir2vis", 0).query[:7]
    torch.manual_seed(0)
    model = ReIDModel("attnet_xxs", 0, (64, 32)).eval()
    pipeline = eval_pipeline(AugmentConfig(64, 32))
    eager = extract_features(model, samples, pipeline, batch_size=4, num_workers=0)
    compiled = extract_features(model, samples, pipeline, batch_size=4, num_workers=0, compile="default")
    assert compiled.shape == eager.shape == (7, model.num_features)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    assert recompile_reasons() == []  # the short last batch (3 of 4) was padded, not compiled again
