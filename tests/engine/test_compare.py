import json

import pytest
from typer.testing import CliRunner

from reid.cli import app
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
        assert row.report.to_dict()["results"] == expected.to_dict()["results"]
    # the shared report schema, with every rank, the std over trials and the command
    stored = data["backbones"][0]["report"]["results"]["ir2vis"]
    assert set(stored) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "std"}
    assert set(stored["std"]) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    table = (out / "comparison.md").read_text()
    assert "| attnet_xxs | 64x32 |" in table and "ir2vis_mAP" in table and "ir2vis_rank10" in table and " ± " in table
    assert "ir2vis_mAP_std" in (out / "comparison.csv").read_text().splitlines()[0]
    # on a CPU the training-step memory is not measured, and the table says so instead of printing 0.0
    assert all(row.training_peak_memory_mb is None for row in rows)
    assert "training_peak_MB is measured on CUDA only" in table and "| 0.0 |" not in table

    # a second run trains nothing and re-evaluates nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = run_comparison(config, ["attnet_xxs", "resnet18"], out, trials=2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    assert [r.report.to_dict()["results"] for r in again] == [r.report.to_dict()["results"] for r in rows]

    from_checkpoints = run_comparison(config, ["attnet_xxs"], tmp_path / "again", train=False, checkpoints=out,
                                      trials=2)
    assert from_checkpoints[0].report.to_dict()["results"] == rows[0].report.to_dict()["results"]


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


def test_every_backbone_name_is_checked_before_any_work(tiny_config, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config().to_yaml())
    result = CliRunner().invoke(app, ["compare", "--config", str(config), "--backbones", "attnet_xxs,not_a_model",
                                      "--output-dir", str(tmp_path / "o"), "--train"])
    assert result.exit_code == 2 and "unknown backbone 'not_a_model'" in result.stderr
    assert not (tmp_path / "o").exists()  # nothing trained, nothing left
    twice = CliRunner().invoke(app, ["compare", "--config", str(config), "--backbones", "attnet_xxs,attnet_xxs",
                                     "--output-dir", str(tmp_path / "o"), "--train"])
    assert twice.exit_code == 2 and "names attnet_xxs more than once" in twice.stderr


def test_a_backbone_with_a_recipe_of_its_own_trains_with_it_on_the_comparisons_data(tiny_config, tmp_path):
    from reid.config import load_config
    from reid.errors import ReidError
    from reid.runs import recipe_for

    own = tmp_path / "agw_resnet.yaml"
    own.write_text(tiny_config(optimizer="sgd", lr=0.1, data_root=str(tmp_path), output_dir="elsewhere",
                               modality_stems=True).to_yaml())
    config = tiny_config(recipes={"resnet18": str(own)}, device="cpu")
    settings = recipe_for(config, "resnet18", tmp_path / "compare/resnet18")
    assert (settings.optimizer, settings.lr, settings.modality_stems) == ("sgd", 0.1, True)  # the recipe's
    assert settings.data_root == config.data_root and settings.output_dir == str(tmp_path / "compare/resnet18")
    assert recipe_for(config, "attnet_xxs", tmp_path / "a").optimizer == config.optimizer  # the comparison's
    shipped = load_config("agw_compare_llcm.yaml")
    agw = recipe_for(shipped, "resnet50", tmp_path / "r")
    assert (agw.optimizer, agw.last_stride, agw.modality_stems) == ("sgd", 1, True)  # AGW's own, as published
    other = tmp_path / "vcm.yaml"
    other.write_text(tiny_config(dataset="vcm").to_yaml())
    with pytest.raises(ReidError, match="trains on vcm, the comparison on llcm"):
        recipe_for(tiny_config(recipes={"resnet18": str(other)}), "resnet18", tmp_path / "x")


def test_a_short_compare_runs_agws_resnet50_recipe_with_its_non_local_blocks(tiny_llcm, tmp_path):
    """``reid compare`` over the shipped agw_compare_llcm.yaml, made small (one epoch at 64x32, no ImageNet file):
    ResNet-50 trains with AGW's own recipe, the non-local blocks and both stems included, to the end."""
    import torch
    import yaml

    from reid.config import load_config

    small = dict(data_root=str(tiny_llcm), epochs=1, input_height=64, input_width=32, batch_identities=4,
                 num_workers=0, eval_first=None, eval_every=1)
    recipe = yaml.safe_load(load_config("agw_llcm_resnet50.yaml").to_yaml()) | small | {"pretrained": None}
    (tmp_path / "agw_resnet50.yaml").write_text(yaml.safe_dump(recipe))
    comparison = yaml.safe_load(load_config("agw_compare_llcm.yaml").to_yaml()) | small
    comparison["recipes"] = {"resnet50": str(tmp_path / "agw_resnet50.yaml")}
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(comparison))
    result = CliRunner().invoke(app, ["compare", "--config", str(tmp_path / "compare.yaml"), "--backbones",
                                      "resnet50", "--train", "--trials", "1", "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "| resnet50 |" in (tmp_path / "o" / "comparison.md").read_text()
    state = torch.load(tmp_path / "o" / "resnet50" / "best.pt", weights_only=True)
    assert state["model_config"]["non_local"] == [0, 2, 3, 0] and state["model_config"]["modality_stems"] is True
    blocks = {key.split(".")[1] for key in state["model"] if key.startswith("non_local.")}
    assert blocks == {"layer2_2", "layer2_3", "layer3_3", "layer3_4", "layer3_5"}
