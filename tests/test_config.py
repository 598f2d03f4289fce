from pathlib import Path

import pytest

from reid.config import ConfigError, PretrainConfig, TrainConfig, load_config, make_config, parse_assignments

ROOT = Path(__file__).parent.parent


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        load_config(write(tmp_path, "dataset: llcm\ndata_root: x\nlrr: 0.1\n"))


def test_wrong_type_and_range_are_named(tmp_path):
    with pytest.raises(ConfigError, match="epochs: .*integer.*'many'"):
        load_config(write(tmp_path, "dataset: llcm\ndata_root: x\nepochs: many\n"))
    with pytest.raises(ConfigError, match="augment_flip: .*less than or equal to 1"):
        load_config(write(tmp_path, "dataset: llcm\ndata_root: x\naugment_flip: 2\n"))
    with pytest.raises(ConfigError, match="dataset: .*'market'"):
        load_config(write(tmp_path, "dataset: market\ndata_root: x\n"))
    with pytest.raises(ConfigError, match="missing required key 'data_root'"):
        load_config(write(tmp_path, "dataset: llcm\n"))
    with pytest.raises(ConfigError, match="lr_steps: .*increasing epochs"):
        load_config(write(tmp_path, "dataset: llcm\ndata_root: x\nlr_steps: [50, 20]\n"))


def test_yaml_problems(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "dataset: [llcm\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_and_scientific_notation(tmp_path):
    config = load_config(write(tmp_path, "dataset: vcm\ndata_root: x\nlr: 3e-4\n"), epochs=7, backbone=None)
    assert config.epochs == 7 and config.lr == 3e-4 and config.backbone == "attnet_t1"


def test_paths_are_checked_before_a_run(tmp_path):
    config = make_config({"dataset": "llcm", "data_root": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="data_root: no such directory"):
        config.check_paths()
    config = make_config({"dataset": "llcm", "data_root": str(tmp_path), "pretrained": str(tmp_path / "w.pth")})
    with pytest.raises(ConfigError, match="pretrained: no such file"):
        config.check_paths()


def test_every_shipped_config_is_valid():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        kind = PretrainConfig if path.name.startswith("pretrain") else TrainConfig
        assert isinstance(load_config(path, kind), kind), path


def test_set_assignments_are_read_as_yaml_and_validated(tmp_path):
    from reid.config import parse_assignments

    assert parse_assignments(["device = cpu", "seed="]) == {"device": "cpu", "seed": None}
    values = parse_assignments(["batch_identities=5", "pretrained=null", "lr=0.001", "sysu_mode=indoor"])
    assert values == {"batch_identities": 5, "pretrained": None, "lr": 0.001, "sysu_mode": "indoor"}
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE, got 'epochs'"):
        parse_assignments(["epochs"])
    path = tmp_path / "c.yaml"
    path.write_text("dataset: llcm\ndata_root: .\npretrained: weights/none.pth\nepochs: 3\n")
    config = load_config(path, assignments=["pretrained=null", "input_height=96", "lr=1e-3"], epochs=7)
    assert config.pretrained is None and config.input_height == 96 and config.lr == 0.001 and config.epochs == 7
    with pytest.raises(ConfigError, match="c.yaml with --set: unknown key 'batch_identitis' .*batch_identities"):
        load_config(path, assignments=["batch_identitis=3"])
    with pytest.raises(ConfigError, match="epochs: Input should be greater than or equal to 1"):
        load_config(path, assignments=["epochs=0"])


def test_shipped_configs_are_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("configs/demo.yaml").backbone == "attnet_xxs"
    assert load_config("demo.yaml").dataset == "llcm"
    with pytest.raises(ConfigError, match="nope.yaml: no such config file .*shipped configs: .*demo.yaml"):
        load_config("configs/nope.yaml")


@pytest.mark.parametrize("name", ["agw_llcm_attnet_t1", "agw_llcm_attnet_t2", "agw_vcm_attnet_t1", "agw_vcm_attnet_t2",
                                  "agw_llcm_resnet50", "agw_vcm_resnet50", "agw_compare_llcm", "agw_compare_vcm"])
def test_agw_configs_hold_agws_recipe(name):
    config = load_config(f"{name}.yaml")
    losses = (config.label_smoothing, config.metric_loss, config.triplet_cross_weight, config.triplet_batch_weight,
              config.id_weight)
    assert losses == (0.0, "weighted", 0.0, 1.0, 1.0)  # identity + WRT on the whole batch
    # AGW's raw distances before the BNNeck for its ResNet-50; after it, normalised, for the others (ours)
    where = (config.triplet_features, config.triplet_normalize)
    assert where == (("pooled", False) if "resnet50" in name else ("bnneck", True))
    assert (config.batch_identities, config.batch_instances) == (8, 4 if config.dataset == "llcm" else 2)
    schedule = (config.epochs, config.warmup_epochs, config.warmup_factor, config.warmup_by, config.lr_schedule,
                config.lr_steps, config.lr_decay, config.backbone_lr_scale, config.weight_decay, config.grad_clip)
    assert schedule == (81, 10, 0.1, "epoch", "step", [20, 50], 0.1, 0.1, 5e-4, None)
    # LLCM's AGW baseline erases (ZYK100/LLCM AGW/train.py lines 40, 110) and chooses on visible -> infrared (line
    # 64); mangye16's does neither (train.py lines 114-121) and chooses on thermal -> visible (line 71)
    erasing, direction = (0.5, "vis2ir") if config.dataset == "llcm" else (0.0, "ir2vis")
    augment = (config.augment_pad, config.augment_flip, config.augment_erasing, config.augment_channel)
    assert augment == (10, 0.5, erasing, 0) and config.best_direction == direction
    # AGW evaluates after its 0-based epochs 2, 4, ..., 80 and keeps the best rank-1
    assert [epoch for epoch in range(1, 82) if config.evaluates_after(epoch)] == list(range(3, 82, 2))
    assert config.best_metric == "rank1"
    if "resnet50" in name:
        assert (config.optimizer, config.lr, config.momentum, config.pooling) == ("sgd", 0.1, 0.9, "gem")
        model = (config.modality_stems, config.last_stride, config.gem_trainable, config.bnneck_init_std,
                 config.decay_all_weights, config.amp, config.input_resize)
        assert model == (True, 1, False, 0.01, True, "off", "lanczos")
        assert (config.non_local, config.non_local_channels) == ([0, 2, 3, 0], "one")  # model.py lines 155, 21
        assert config.pretrained == "weights/resnet50-19c8e357.pth"  # resnet.py line 11: torchvision's file
    else:
        assert (config.optimizer, config.lr, config.modality_stems, config.last_stride) == ("adamw", 3.5e-4, False,
                                                                                            None)
    if name.startswith("agw_compare"):
        assert config.recipes == {"resnet50": f"agw_{config.dataset}_resnet50.yaml"}


def test_an_alias_bomb_is_refused_at_once_without_a_huge_message(tmp_path):
    import time

    lines = ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nlr_steps: *i\ndataset: llcm\ndata_root: .\n")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="more than 10,000 values once its aliases are expanded") as caught:
        load_config(bomb)
    assert time.monotonic() - start < 5 and len(str(caught.value)) < 300
    nested = "{x: &x [1,1,1,1,1,1,1,1,1,1], y: &y [" + ",".join(["*x"] * 10) + "], z: &z [" + \
        ",".join(["*y"] * 10) + "], w: [" + ",".join(["*z"] * 11) + "]}"
    with pytest.raises(ConfigError, match="--set lr_steps: more than 10,000 values"):
        parse_assignments([f"lr_steps={nested}"])
    huge = tmp_path / "huge.yaml"
    huge.write_text("dataset: llcm\n" + "#" * (1 << 20))
    with pytest.raises(ConfigError, match="too large for a config"):
        load_config(huge)


def test_a_best_direction_the_dataset_does_not_search_is_refused():
    assert make_config({"dataset": "llcm", "data_root": "x", "best_direction": "vis2ir"}).best_direction == "vis2ir"
    with pytest.raises(ConfigError, match="best_direction: sysu is searched ir2vis only, not vis2ir"):
        make_config({"dataset": "sysu", "data_root": "x", "best_direction": "vis2ir"})


def test_infinite_and_nan_numbers_are_refused():
    for key in ("lr", "weight_decay"):
        for value in (".inf", ".nan"):
            with pytest.raises(ConfigError, match=f"{key}: Input should be a finite number"):
                load_config(None, assignments=[f"{key}={value}", "dataset=llcm", "data_root=."])


def test_every_config_key_is_described_and_the_readme_table_is_the_generated_one():
    import re
    from pathlib import Path

    from reid.config import PretrainConfig, TrainConfig, config_reference

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for marker, kind in (("train-config-keys", TrainConfig), ("pretrain-config-keys", PretrainConfig)):
        assert all(field.description for field in kind.model_fields.values()), kind
        table = re.search(rf"<!-- {marker} -->\n(.*?)\n<!-- /{marker} -->", readme, re.S)
        assert table and table.group(1) == config_reference(kind), (
            f"README's {marker} table is stale: paste reid.config.config_reference({kind.__name__})")
        for key in kind.model_fields:
            assert f"| `{key}` |" in table.group(1)


def test_values_are_read_as_the_readme_writes_them_and_a_bool_is_never_a_number(tmp_path):
    path = write(tmp_path, "dataset: llcm\ndata_root: .\npretrained: null\n")
    config = load_config(path, assignments=["compile=off", "amp=off"])  # YAML 1.1 would read off as false
    assert (config.compile, config.amp) == ("off", "off")
    with pytest.raises(ConfigError, match="epochs: must be a number, not true or false"):
        load_config(path, assignments=["epochs=true"])
    with pytest.raises(ConfigError, match="seed: must fit in 64 bits"):
        load_config(path, assignments=[f"seed={2 ** 70}"])


def test_deeply_nested_yaml_is_one_error_not_a_recursion(tmp_path):
    with pytest.raises(ConfigError, match="--set lr_steps: nested too deeply"):
        parse_assignments(["lr_steps=" + "[" * 5000 + "]" * 5000])
    with pytest.raises(ConfigError, match="c.yaml: nested deeper than 16 levels"):
        load_config(write(tmp_path, "dataset: llcm\ndata_root: .\nrecipes: " + "[" * 40 + "]" * 40 + "\n"))
    recursive = write(tmp_path, "dataset: llcm\ndata_root: .\nrecipes: &a [*a]\n")
    with pytest.raises(ConfigError, match="c.yaml: "):
        load_config(recursive)
