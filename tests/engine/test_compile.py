"""torch.compile on a CPU, through the aot_eager backend: the same graph capture as on a GPU, without code
generation, so the tests check the plumbing (no recompilation, checkpoints without prefixes, the same numbers)."""
import pytest
import torch
import torch._dynamo

from reid.data.transforms import eval_pipeline
from reid.engine import compile as compile_module
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.compile import IMAGES_TO_COMPILE, TRAINING_STEPS_TO_COMPILE, pad_batch, resolve_compile
from reid.engine.inference import embed_samples
from reid.engine.trainer import Trainer
from reid.models.reid_model import ReIDModel
from reid.settings import AugmentConfig

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


def test_auto_compiles_only_where_it_pays():
    # training: long CUDA runs only
    assert resolve_compile("auto", "cuda", steps=TRAINING_STEPS_TO_COMPILE) == "reduce-overhead"
    assert resolve_compile("auto", "cuda", steps=TRAINING_STEPS_TO_COMPILE - 1) is None
    assert resolve_compile("auto", "cpu", steps=10 ** 9) is None
    # embedding passes: millions of images on CUDA only; a single query never
    assert resolve_compile("auto", "cuda", images=IMAGES_TO_COMPILE) == "reduce-overhead"
    assert resolve_compile("auto", "cuda", images=14_000) is None and resolve_compile("auto", "cuda", images=1) is None
    assert resolve_compile("auto", "cuda:1") is None  # nothing known about the work: eager


def test_explicit_modes_always_compile_as_asked():
    assert resolve_compile("max-autotune", "cpu", images=1) == "max-autotune"
    assert resolve_compile("default", "cuda", steps=1) == "default"
    assert resolve_compile("off", "cuda", steps=10 ** 9) is None
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
    eager = embed_samples(model, samples, pipeline, batch_size=4, num_workers=0)
    compiled = embed_samples(model, samples, pipeline, batch_size=4, num_workers=0, compile="default")
    assert compiled.shape == eager.shape == (7, model.num_features)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    assert recompile_reasons() == []  # the short last batch (3 of 4) was padded, not compiled again


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("forced: this backend cannot compile anything")


@pytest.fixture
def failing_compiler(monkeypatch):
    monkeypatch.setattr(compile_module, "BACKEND", _failing_backend)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_a_failed_compilation_trains_on_eagerly_with_one_line_in_the_log(tiny_config, tmp_path, failing_compiler):
    eager = tiny_config(output_dir=str(tmp_path / "eager"), epochs=1, compile="off")
    failing = tiny_config(output_dir=str(tmp_path / "failing"), epochs=1, compile="default")
    Trainer(eager).fit()
    Trainer(failing).fit()
    eager_state = RunCheckpoint.load(tmp_path / "eager/last.pt").state
    failing_state = RunCheckpoint.load(tmp_path / "failing/last.pt").state
    for key, value in eager_state["model"].items():  # the same numbers as an eager run, to the bit
        assert torch.equal(value, failing_state["model"][key]), key
    log = (tmp_path / "failing/train.log").read_text()
    lines = [line for line in log.splitlines() if "torch.compile (default) failed" in line]
    assert len(lines) == 1 and "forced: this backend cannot compile anything" in lines[0]
    assert "--compile off" in lines[0]


def test_a_failed_compilation_embeds_eagerly(tiny_llcm, failing_compiler):
    from reid.data import load_dataset

    samples = load_dataset("llcm", tiny_llcm).test_split("ir2vis", 0).query[:7]
    torch.manual_seed(0)
    model = ReIDModel("attnet_xxs", 0, (64, 32)).eval()
    pipeline = eval_pipeline(AugmentConfig(64, 32))
    said = []
    eager = embed_samples(model, samples, pipeline, batch_size=4, num_workers=0)
    compiled = embed_samples(model, samples, pipeline, batch_size=4, num_workers=0, compile="default",
                             on_fallback=said.append)
    assert torch.equal(compiled, eager) and len(said) == 1 and "runs eagerly" in said[0]


def test_evaluate_and_a_query_on_the_demo_data_never_compile_under_auto_even_on_cuda(checkpoint_file, tmp_path,
                                                                                      monkeypatch):
    """Every embedding pass of the commands is asked what ``auto`` would decide on CUDA for its workload: none of
    them (the demo's whole test set, a gallery build, one query) would compile."""
    from typer.testing import CliRunner

    from reid.cli import app
    from reid.data import make_dataset
    from reid.engine import inference

    decisions = []

    def decided_as_on_cuda(model, mode, device, steps=None, images=None, on_fallback=None):
        decisions.append((mode, images, resolve_compile(mode, "cuda", steps, images)))
        return model

    monkeypatch.setattr(inference, "compile_model", decided_as_on_cuda)
    root = make_dataset("llcm", tmp_path / "demo-llcm")  # the demo's size
    checkpoint, _ = checkpoint_file()
    model = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    runner = CliRunner()
    evaluate = runner.invoke(app, ["evaluate", "--dataset", "llcm", "--data-root", str(root), *model])
    assert evaluate.exit_code == 0, evaluate.output
    built = runner.invoke(app, ["index", "build", "--out", str(tmp_path / "g"), "--dataset", "llcm", "--data-root",
                                str(root), *model])
    assert built.exit_code == 0, built.output
    image = next((root / "test_nir").rglob("*.jpg"))
    query = runner.invoke(app, ["index", "query", "--index", str(tmp_path / "g"), str(image), *model])
    assert query.exit_code == 0, query.output
    assert len(decisions) == 3 and decisions[-1][1] == 1
    assert all(mode == "auto" and resolved is None for mode, _, resolved in decisions), decisions


def _forward_compiles_backward_fails():
    """A backend whose forward compiles (as aot_eager's does) and whose backward compiler raises, when
    AOTAutograd compiles the backward at the first loss.backward()."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def backward(graph_module, example_inputs):
        raise RuntimeError("forced: this backend cannot compile a backward")

    return aot_autograd(fw_compiler=lambda graph_module, example_inputs: make_boxed_func(graph_module.forward),
                        bw_compiler=backward)


def test_a_backward_that_fails_to_compile_redoes_the_step_eagerly(tiny_config, tmp_path, monkeypatch):
    """The first step's backward fails to compile: the step is redone eagerly from where it began (its BatchNorm
    statistics and random state put back), one line says so, and the run ends as an eager run does."""
    monkeypatch.setattr(compile_module, "BACKEND", _forward_compiles_backward_fails())
    torch._dynamo.reset()
    try:
        eager = tiny_config(output_dir=str(tmp_path / "eager"), epochs=1, compile="off", modality_stems=True)
        failing = tiny_config(output_dir=str(tmp_path / "failing"), epochs=1, compile="default", modality_stems=True)
        Trainer(eager).fit()
        Trainer(failing).fit()
    finally:
        torch._dynamo.reset()
    eager_state = RunCheckpoint.load(tmp_path / "eager/last.pt").state
    failing_state = RunCheckpoint.load(tmp_path / "failing/last.pt").state
    for key, value in eager_state["model"].items():  # the same computation as the eager run's, step for step
        assert torch.equal(value, failing_state["model"][key]), key
    log = (tmp_path / "failing/train.log").read_text()
    lines = [line for line in log.splitlines() if "torch.compile (default) failed" in line]
    assert len(lines) == 1 and "cannot compile a backward" in lines[0]
