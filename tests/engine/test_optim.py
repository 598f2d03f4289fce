import pytest
import torch
from timm.optim import param_groups_weight_decay

from reid.config import make_config
from reid.engine.optim import base_lr, make_optimizer, make_scheduler, parameter_groups
from reid.models.reid_model import ReIDModel


@pytest.fixture(scope="module")
def model():
    return ReIDModel("attnet_xxs", 5, (64, 32), pooling="gem")


def config(**values):
    return make_config(dict(dataset="llcm", data_root=".", **values))


def identities(groups):
    return [[id(p) for p in group["params"]] for group in groups]


def test_one_scale_gives_timms_own_groups_in_timms_order(model):
    ours = parameter_groups(model, 0.05)
    timm_groups = param_groups_weight_decay(model, 0.05, model.no_weight_decay())
    assert identities(ours) == identities(timm_groups)
    assert [g["weight_decay"] for g in ours] == [g["weight_decay"] for g in timm_groups] == [0.0, 0.05]


def test_backbone_trains_at_its_scale_and_the_head_at_lr(model):
    optimizer = make_optimizer(model, config(optimizer="sgd", lr=0.1, weight_decay=5e-4, backbone_lr_scale=0.1))
    make_scheduler(optimizer, config(lr=0.1, warmup_epochs=0, lr_schedule="step"), 10).step_update(1)
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:  # the BNNeck's bias
            continue
        expected = 0.01 if name.startswith("backbone.") else 0.1  # BNNeck, classifier and GeM at lr
        assert rate[id(parameter)] == pytest.approx(expected), name
    assert base_lr(optimizer) == pytest.approx(0.1)  # what logs and curves show
    assert {g["nesterov"] for g in optimizer.param_groups} == {True}  # timm's "sgd", as AGW uses it
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    assert id(model.classifier.weight) in decayed and id(model.bottleneck.weight) not in decayed
    assert id(model.gem.p) not in decayed


def test_step_schedule_is_agws_epoch_by_epoch():
    steps = 7
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    recipe = config(lr=0.1, lr_schedule="step", warmup_epochs=10, warmup_factor=0.1, lr_steps=[20, 50], epochs=81)
    scheduler = make_scheduler(optimizer, recipe, steps)
    rates = []
    for update in range(81 * steps):
        if update:
            scheduler.step_update(update)
        if update % steps == 0:
            rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.01)  # AGW: lr * (epoch + 1) / 10 in epoch 0
    assert rates[5] == pytest.approx(0.01 + 0.09 * 5 / 10)  # per step, so a little below AGW's 0.06
    assert rates[10:20] == pytest.approx([0.1] * 10)
    assert rates[20:50] == pytest.approx([0.01] * 30)
    assert rates[50:] == pytest.approx([0.001] * 31)
    again = make_scheduler(torch.optim.SGD([parameter], lr=0.1), recipe, steps)
    again.load_state_dict(scheduler.state_dict())  # resumes: the state is plain numbers
    assert again.decay_t == [20 * steps, 50 * steps]


def test_cosine_schedule_warms_up_then_ends_at_min_lr():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    scheduler = make_scheduler(optimizer, config(lr=1e-3, warmup_epochs=1, epochs=3, min_lr=1e-6), 4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    scheduler.step_update(4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    scheduler.step_update(8)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    scheduler.step_update(12)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)


def agw_learning_rate(lr: float, epoch: int) -> float:
    """AGW's adjust_learning_rate (mangye16/Cross-Modal-Re-ID-baseline, train.py), written out: the rate of the
    BNNeck and classifier in a 0-based epoch (the backbone gets a tenth of it)."""
    if epoch < 10:
        return lr * (epoch + 1) / 10
    if epoch < 20:
        return lr
    if epoch < 50:
        return lr * 0.1
    return lr * 0.01


@pytest.mark.parametrize("config_name", ["agw_llcm_resnet50", "agw_llcm_attnet_t2"])
def test_the_agw_configs_give_agws_rate_in_every_step_of_every_epoch(config_name):
    from reid.config import load_config

    recipe = load_config(f"{config_name}.yaml")
    steps = 5
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight], "lr_scale": recipe.backbone_lr_scale},
                                 {"params": [model.bias]}], lr=recipe.lr)
    scheduler = make_scheduler(optimizer, recipe, steps)
    for update in range(recipe.epochs * steps):  # the rate each update runs at (set by the previous step_update)
        epoch = update // steps
        head, backbone = optimizer.param_groups[1]["lr"], optimizer.param_groups[0]["lr"]
        assert head == pytest.approx(agw_learning_rate(recipe.lr, epoch)), (epoch, update)
        assert backbone == pytest.approx(0.1 * agw_learning_rate(recipe.lr, epoch)), (epoch, update)
        scheduler.step_update(update + 1)


def test_agws_resnet50_recipe_decays_every_parameter():
    from reid.config import load_config
    from reid.engine.checkpoint import build_model

    recipe = load_config("agw_llcm_resnet50.yaml").model_copy(update={"input_height": 64, "input_width": 32,
                                                                     "pretrained": None})  # no ImageNet file here
    model = build_model(recipe, 7)
    optimizer = make_optimizer(model, recipe)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-4, 5e-4]  # backbone, then head
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    decayed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert decayed == trained  # BN weights and biases, the BNNeck, the classifier: all of them
    assert [group["lr_scale"] for group in optimizer.param_groups] == [0.1, 1.0]
    # AGW's train.py: every parameter but the BNNeck's and the classifier's at the backbone's rate, the non-local
    # blocks included
    head = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert head == {id(p) for module in (model.bottleneck, model.classifier) for p in module.parameters()
                    if p.requires_grad}
    assert model.non_local and all(id(p) not in head for p in model.non_local.parameters())
