import numpy as np
import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

from reid.cli import app
from reid.config import PretrainConfig
from reid.engine.pretrain import pretrain
from reid.errors import ReidError
from reid.models.reid_model import ReIDModel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ImageFolder: 4 classes of striped patterns, 12 train and 4 val images each."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for label in range(4):
            (root / split / f"class{label}").mkdir(parents=True)
            for k in range(count):
                y = np.arange(40)[:, None] * (label + 1) / 6.0
                image = (127 + 100 * np.sin(y + np.zeros((1, 40))) + rng.normal(0, 20, (40, 40)))
                rgb = np.stack([image, np.roll(image, label, 1), image.T], axis=2).clip(0, 255).astype(np.uint8)
                Image.fromarray(rgb).save(root / split / f"class{label}" / f"{k}.png")
    return root


def config(folder, out, **changes):
    values = dict(data_root=str(folder), model="attnet_xxs", output_dir=str(out), epochs=1, batch_size=8, lr=0.5,
                  warmup_epochs=0, input_size=32, num_workers=0, ema_decay=0.9)
    return PretrainConfig(**(values | changes))


def test_pretrain_resume_and_load_as_backbone(folder, tmp_path):
    row = pretrain(config(folder, tmp_path / "run"))
    assert row["epoch"] == 1 and 0 <= row["top1"] <= 100 and row["top5"] >= row["top1"] and "ema_top1" in row
    row = pretrain(config(folder, tmp_path / "run", epochs=2), resume=True)
    assert row["epoch"] == 2
    checkpoint = torch.load(tmp_path / "run/last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and [r["epoch"] for r in checkpoint["history"]] == [1, 2]
    # the released AttNet key layout: fused fc1 and 1x1 convolution weights
    assert checkpoint["model_ema"]["stages.0.0.channel_mixer.fc1.weight"].ndim == 4
    assert checkpoint["model"]["head.weight"].shape == (4, 240)

    loaded = timm.create_model("attnet_xxs", num_classes=4, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "run/last.pt")))
    reference = timm.create_model("attnet_xxs", num_classes=4)
    from reid.models.attnet import remap_released_keys
    reference.load_state_dict(remap_released_keys(checkpoint["model_ema"]))  # timm prefers the EMA weights
    for key, value in reference.state_dict().items():
        if not key.startswith("head."):  # timm re-initialises a classifier whose size is not its cfg's 1000
            assert torch.equal(value, loaded.state_dict()[key]), key

    backbone = ReIDModel("attnet_xxs", num_classes=3, input_size=(64, 32), pretrained=tmp_path / "run/last.pt")
    assert torch.equal(backbone.backbone.stages[0][0].token_mixer.x_proj.weight,
                       reference.stages[0][0].token_mixer.x_proj.weight)


def test_bad_folders_are_user_errors(folder, tmp_path):
    with pytest.raises(ReidError, match="no such folder"):
        pretrain(config(tmp_path, tmp_path / "run"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(config(folder, tmp_path / "o", batch_size=100).to_yaml())
    result = CliRunner().invoke(app, ["pretrain", "--config", str(recipe)])
    assert result.exit_code == 2 and "larger than the 48 training images" in result.stderr
    recipe.write_text(recipe.read_text() + "learning_rate: 0.1\n")
    result = CliRunner().invoke(app, ["pretrain", "--config", str(recipe), "--epochs", "2"])
    assert result.exit_code == 2 and "recipe.yaml: unknown key 'learning_rate'" in result.stderr


def test_the_shipped_pretraining_config_is_the_recipe_default():
    from pathlib import Path

    from reid.config import load_config

    shipped = load_config(Path(__file__).parents[2] / "configs/pretrain_attnet_t2.yaml", PretrainConfig)
    default = PretrainConfig(data_root=shipped.data_root, output_dir=shipped.output_dir)
    assert shipped == default
