import json
from pathlib import Path

from typer.testing import CliRunner

from reid.cli import app

runner = CliRunner()


def test_models_json_lists_parameter_counts():
    result = runner.invoke(app, ["models", "attnet_xxs", "attnet_t1", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # one object per line, as --help says
    assert [row["name"] for row in rows] == ["attnet_xxs", "attnet_t1"]
    assert rows[1]["params"] == 13714900 and rows[1]["input_size"] == [288, 144] and rows[1]["note"] is None
    assert rows[1]["weights"] == "missing: weights/AttNet_T1.pth" and rows[1]["measured"] is False


def test_models_answers_at_once_without_torch():
    """The recorded listing builds nothing: run in a fresh interpreter, it never imports torch."""
    import subprocess
    import sys

    code = ("import sys; from reid.cli import app; from typer.testing import CliRunner; "
            "result = CliRunner().invoke(app, ['models', '--json']); assert result.exit_code == 0, result.output; "
            "print(len(result.stdout.splitlines()), 'torch' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert output == ["20", "False"]


def test_models_lists_the_drop_ins_as_having_no_released_weights():
    result = runner.invoke(app, ["models", "atconv_pvt_v2_b1", "--json"])
    assert json.loads(result.stdout)["weights"].startswith("none released")


def test_models_table():
    result = runner.invoke(app, ["models", "attnet_xxs", "--size", "256x128"])
    assert result.exit_code == 0
    assert "attnet_xxs" in result.stdout and "2.854" in result.stdout and "runs at 256x128" in result.stdout


def test_unknown_backbone_exits_2_with_one_line():
    result = runner.invoke(app, ["models", "resnet5O"])
    assert result.exit_code == 2
    assert "error: unknown backbone 'resnet5O'" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_bad_size_names_the_option():
    result = runner.invoke(app, ["models", "attnet_xxs", "--size", "big"])
    assert result.exit_code == 2 and "--size must look like HEIGHTxWIDTH" in result.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("reid ")


def test_data_make_demo_then_check_json(tmp_path):
    root = tmp_path / "vcm"
    made = runner.invoke(app, ["data", "make-demo", "--layout", "vcm", "--out", str(root), "--ids", "6"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["data", "check", "--dataset", "vcm", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["dataset"] == "vcm" and set(stats) == {"dataset", "train", "query", "gallery", "root", "ok"}
    assert stats["ok"] is True and stats["root"] == str(root)
    assert set(stats["train"]["ir"]) == {"ids", "tracklets", "frames", "cameras"}
    assert stats["query"]["ir"]["tracklets"] == 4  # 2 test ids x 2 long infrared tracklets
    again = runner.invoke(app, ["data", "make-demo", "--layout", "vcm", "--out", str(root)])
    assert again.exit_code == 2 and "already holds a synthetic dataset (pass --overwrite" in again.stderr
    replaced = runner.invoke(app, ["data", "make-demo", "--layout", "vcm", "--out", str(root), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output  # a dataset the project wrote may be replaced when asked
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    refused = runner.invoke(app, ["data", "make-demo", "--layout", "vcm", "--out", str(mine), "--overwrite"])
    assert refused.exit_code == 2 and (mine / "notes.txt").read_text() == "a user's file"  # never a user's folder


def test_data_check_lists_every_problem_and_exits_2(tmp_path):
    root = tmp_path / "llcm"
    runner.invoke(app, ["data", "make-demo", "--layout", "llcm", "--out", str(root), "--ids", "6"])
    (root / "idx/test_id.txt").write_text("5,6,77\n")
    corrupt = sorted((root / "test_vis").rglob("*.jpg"))[0]
    corrupt.write_bytes(b"not an image")
    lines = (root / "idx/train_nir.txt").read_text().splitlines()
    (root / "idx/train_nir.txt").write_text("\n".join(["broken line here"] + lines[1:]) + "\n")
    result = runner.invoke(app, ["data", "check", "--dataset", "llcm", "--root", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "4 problems in dataset" in result.stderr  # the unknown identity is missing from both modalities
    assert "identity 0077 has no images under test_vis/" in result.stderr
    assert "identity 0077 has no images under test_nir/" in result.stderr
    assert f"{corrupt}: unreadable image" in result.stderr
    assert "train_nir.txt:1: expected 'relative/path label'" in result.stderr


def test_data_check_unknown_dataset():
    result = runner.invoke(app, ["data", "check", "--dataset", "market1501", "--root", "."])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    from reid.data.registry import DATASETS

    names = ", ".join(map(repr, DATASETS))  # the registry as it is when the command runs
    assert f"error: Invalid value for '--dataset' / '-d': 'market1501' is not one of {names}" in result.stderr


def test_option_config_and_path_errors_answer_before_torch_is_loaded(tmp_path):
    """A typo costs no torch import (seconds): the command line checks options, configs and paths first."""
    import subprocess
    import sys

    typo = tmp_path / "typo.yaml"
    typo.write_text("dataset: llcm\ndata_root: .\nlearning_rate: 0.1\n")
    cases = [
        ["train", "--config", str(typo)],
        ["train", "--config", str(tmp_path / "missing.yaml")],
        ["evaluate", "--checkpoint", str(tmp_path / "x.pt"), "--dataset", "llcm", "--data-root", "."],
        ["evaluate", "--backbone", "attnet_t1", "--input-size", "big", "--dataset", "llcm", "--data-root", "."],
        ["index", "query", "--index", str(tmp_path), "--checkpoint", str(tmp_path / "x.pt"), "q.jpg"],
        ["extract", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "e.npz")],
        ["export", "--backbone", "attnet_t1", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "m")],
    ]
    code = ("import json, sys; from typer.testing import CliRunner; from reid.cli import app; "
            "codes = [CliRunner().invoke(app, args).exit_code for args in json.loads(sys.argv[1])]; "
            "print(codes, 'torch' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == f"{[2] * len(cases)} False"


def test_every_check_answers_before_torch_is_loaded_with_every_problem_at_once(tmp_path):
    """Each case is refused (exit 2) while torch is still not imported, and a command with several problems names
    all of them, one line each. Nothing is timed: torch's absence is what makes the answer come at once."""
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"dataset: llcm\ndata_root: {data}\noutput_dir: {run}\nbackbone: attnet_xxs\n")
    (run / "last.pt").write_bytes(b"a run's last epoch")
    fresh = tmp_path / "fresh"
    cases = {
        "unknown backbone": (["train", "--config", "configs/demo.yaml", "--data-root", str(data), "--output-dir",
                              str(fresh), "--backbone", "resnet5O"], ["unknown backbone 'resnet5O'"]),
        "unknown model name": (["models", "attnet_t1", "resnet5O"], ["unknown backbone 'resnet5O'"]),
        "search mode": (["evaluate", "--dataset", "sysu", "--data-root", str(data), "--backbone", "resnet50",
                         "--sysu-mode", "outdoor"], ["'outdoor' is not one of 'all', 'indoor'"]),
        "regdb trial": (["evaluate", "--dataset", "regdb", "--data-root", str(data), "--backbone", "resnet50",
                         "--trial", "12"], ["--trial 12: RegDB has trials 0..9"]),
        "regdb training trial": (["train", "--config", "configs/regdb_attnet_t1.yaml", "--data-root", str(data),
                                  "--output-dir", str(fresh), "--set", "trial=12", "--set", "pretrained=null"],
                                 ["RegDB has splits 0..9"]),
        "resume changes the model": (["train", "--output-dir", str(run), "--resume", "--set", "backbone=resnet50"],
                                     ["these settings cannot change: backbone"]),
        "already a run": (["train", "--config", "configs/demo.yaml", "--data-root", str(data), "--output-dir",
                           str(run)], [f"{run} already holds a run (last.pt)"]),
        "index and rerank": (["evaluate", "--dataset", "llcm", "--data-root", str(data), "--backbone", "resnet50",
                              "--use-index", "--rerank"], ["give one of --use-index and --rerank"]),
        "two problems": (["serve", "--index", str(tmp_path / "nope"), "--checkpoint", str(tmp_path / "nope.pt")],
                         ["nope: no such gallery directory", "nope.pt: no such file"]),
    }
    code = ("import json, sys; from typer.testing import CliRunner; from reid.cli import app\n"
            "for name, (args, _) in json.loads(sys.argv[1]).items():\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    print(json.dumps([name, result.exit_code, result.stderr, 'torch' in sys.modules]))")
    output = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).parents[1]).stdout
    for line in output.splitlines():
        name, exit_code, stderr, torch_loaded = json.loads(line)
        expected = cases[name][1]
        assert exit_code == 2 and not torch_loaded, (name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == len(expected), (name, stderr)  # one line per problem
        for line_, message in zip(lines, expected, strict=True):
            assert line_.startswith("error: ") and message in line_, (name, stderr)
    assert not fresh.exists()  # a refused run leaves no run directory, config.yaml or train.log behind
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "last.pt"]


def test_a_missing_extra_is_named_with_its_brackets(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    config = tmp_path / "c.yaml"
    config.write_text(f"dataset: llcm\ndata_root: {tmp_path}\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--tensorboard"])
    assert result.exit_code == 2 and "pip install -e '.[tensorboard]'" in result.stderr  # not eaten as markup


def test_help_shows_plain_metavars_and_every_set_example_is_a_key():
    import re

    from reid.config import PretrainConfig, TrainConfig

    for command, kind in (("train", TrainConfig), ("pretrain", PretrainConfig), ("compare", TrainConfig),
                          ("demo", TrainConfig), ("index", None), ("serve", None), ("evaluate", None)):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"}).stdout
        assert "<bool>" not in shown and "<int range>" not in shown and "<str>" not in shown, command
        # no choice broken across lines at 80 columns (it was "<auto|off|default|max-autot" / "une|...>")
        assert shown.count("max-autot") == shown.count("max-autotune"), command
        if kind is not None:
            examples = re.findall(r"--set ([a-z_]+)=", " ".join(shown.split()))
            assert examples and all(key in kind.model_fields for key in examples), (command, examples)


class Loaded(Exception):
    """What a command asked the model loader for (the test stops it there)."""


def model_commands(tmp_path):
    """Every command that loads a model, with arguments that pass its checks (a backbone, a tiny dataset, a gallery,
    an image): command -> arguments."""
    import numpy as np
    from PIL import Image

    from reid.data import make_dataset
    from reid.index.backends import build_gallery_at

    root = make_dataset("llcm", tmp_path / "LLCM", 4, seed=0)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 32)).save(images / "a.jpg")
    gallery = tmp_path / "gallery"
    metadata = [{"path": f"/x/{i}.jpg", "pid": i, "camid": 1, "modality": "vis"} for i in range(4)]
    build_gallery_at(gallery, np.eye(4, 8, dtype=np.float32), metadata, "attnet_xxs", None, None)
    source = ["--backbone", "attnet_xxs"]
    dataset = ["--dataset", "llcm", "--data-root", str(root)]
    return {
        "evaluate": ["evaluate", *dataset, *source],
        "visualize": ["visualize", *dataset, *source, "--output", str(tmp_path / "v.png")],
        "extract": ["extract", *source, "--images", str(images), "--out", str(tmp_path / "e.npz")],
        "export": ["export", *source, "--out", str(tmp_path / "m.onnx")],
        "serve": ["serve", "--index", str(gallery), *source],
        "index build": ["index", "build", *source, "--images", str(images), "--out", str(tmp_path / "g2")],
        "index add": ["index", "add", "--index", str(gallery), *source, str(images / "a.jpg")],
        "index query": ["index", "query", "--index", str(gallery), *source, "--image", str(images / "a.jpg")],
    }


def test_every_model_option_a_command_shows_reaches_the_model(tmp_path, monkeypatch):
    """No option is accepted and ignored: each model option a command lists (where the model comes from, how it
    runs, how it is batched) arrives, with the value given, where the model is loaded; and a command lists only
    the ones that do something there (export runs on the CPU, one batch: no --device, --amp or --batch-size)."""
    import typer.main

    from reid.cli.common import BatchOptions, ModelSource, RunOptions
    from reid.engine.inference import Embedder

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    formatted = {"pretrained": str(weights), "input_size": "96x48"}  # values with a form of their own
    options = {f.name for group in (ModelSource, RunOptions, BatchOptions) for f in group.__dataclass_fields__.values()}
    options -= {"checkpoint", "backbone"}  # where the model comes from: the commands' base arguments

    def stop(cls, **settings):
        raise Loaded(settings)

    monkeypatch.setattr(Embedder, "load", classmethod(stop))
    root = typer.main.get_command(app)
    for name, arguments in model_commands(tmp_path).items():
        command = root
        for part in name.split():
            command = command.get_command(None, part)
        shown = {parameter.name: parameter for parameter in command.params if parameter.name in options}
        if name == "export":
            assert set(shown) == {"pretrained", "input_size"}
        if name == "serve":
            assert not set(shown) & {"batch_size", "num_workers", "compile"}  # --max-batch is serve's batch
        for option, parameter in sorted(shown.items()):
            flag, value = parameter.opts[0], other_value(parameter, formatted.get(option))
            result = runner.invoke(app, [*arguments, *([flag] if value is True else [flag, str(value)])])
            assert isinstance(result.exception, Loaded), (name, option, result.output)
            got = result.exception.args[0][option]
            assert (str(got) if isinstance(got, Path) else got) == value, (name, option, result.exception.args[0])


def other_value(parameter, formatted=None):
    """A value of a command-line option other than its default, from its type (or the one given)."""
    from enum import Enum

    if formatted is not None:
        return formatted
    kind = parameter.type_descriptor.annotation
    if parameter.is_flag or kind is bool:
        assert not parameter.default, f"{parameter.name}: a flag that is on by default"
        return True
    if isinstance(kind, type) and issubclass(kind, Enum):
        return next(member.value for member in kind if member != parameter.default)
    if kind in (int, float):
        low = parameter.min or 0
        return kind(low + 3) if parameter.default is None else parameter.default + 1
    raise AssertionError(f"{parameter.name}: give the test a value of its form in formatted")


def test_an_option_of_a_command_that_clashes_with_a_shared_one_is_refused_where_it_is_declared():
    import pytest
    import typer

    from reid.cli.common import RunOptions, command

    with pytest.raises(TypeError, match="reid clash: the option --device of reid clash itself clashes with the one "
                                        "of RunOptions"):
        @command(typer.Typer(), "clash")
        def clash(run: RunOptions, device: str = "cpu") -> None:
            """Declares --device beside the shared group that has it."""


def test_the_top_level_cli_py_runs_the_same_app_from_a_checkout(tmp_path):
    """The design card's layout: ``python cli.py ...`` from the repository is ``reid ...``."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    script = subprocess.run([sys.executable, str(root / "cli.py"), "models", "attnet_xxs", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    installed = runner.invoke(app, ["models", "attnet_xxs", "--json"])
    assert script.returncode == 0, script.stderr
    assert json.loads(script.stdout) == json.loads(installed.stdout)
    wrong = subprocess.run([sys.executable, str(root / "cli.py"), "models", "resnet5O"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "unknown backbone 'resnet5O'" in wrong.stderr


def test_numbers_beyond_64_bits_nul_bytes_and_long_names_are_one_line_errors(tmp_path):
    cases = [
        (["index", "add", "--index", str(tmp_path / "g"), "--checkpoint", "x.pt", "--pid", str(2 ** 64), "a.jpg"],
         "--pid"),
        (["index", "query", "--index", str(tmp_path / "g"), "--checkpoint", "x.pt", "--camera", str(2 ** 64),
          "a.jpg"], "out of range (a 64-bit integer)"),
        (["data", "make-demo", "--layout", "llcm", "--out", str(tmp_path / "a\x00b")],
         "'--out': embedded null byte"),  # Click's own check
        (["data", "make-demo", "--layout", "llcm", "--out", str(tmp_path / ("x" * 300) / "demo")],
         "a name longer than 255 bytes"),
        (["train", "--config", "configs/demo.yaml", "--set", f"seed={2 ** 70}"], "seed: must fit in 64 bits"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing was written
