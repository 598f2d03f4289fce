import pytest
import timm
import torch
from timm.models.pvt_v2 import Attention as PvtAttention
from timm.models.swin_transformer import WindowAttention

from reid.models import ATConv, with_atconv
from reid.models.backbones import count_parameters, create_backbone
from reid.models.reid_model import ReIDModel

PAIRS = {"atconv_swin_tiny": "swin_tiny_patch4_window7_224", "atconv_pvt_v2_b1": "pvt_v2_b1",
         "atconv_pvt_v2_b2": "pvt_v2_b2"}


def attention_parameters(model):
    return sum(p.numel() for m in model.modules() if isinstance(m, (WindowAttention, PvtAttention))
               for p in m.parameters())


@pytest.mark.parametrize("name", PAIRS)
def test_every_attention_becomes_an_atconv_of_the_same_width_and_nothing_else_changes(name):
    model, base = timm.create_model(name), timm.create_model(PAIRS[name])
    assert not any(isinstance(m, (WindowAttention, PvtAttention)) for m in model.modules())
    mixers = [m for m in model.modules() if isinstance(m, ATConv)]
    attentions = [m for m in base.modules() if isinstance(m, (WindowAttention, PvtAttention))]
    assert len(mixers) == len(attentions) > 0
    atconv = sum(p.numel() for m in mixers for p in m.parameters())
    assert count_parameters(model) == count_parameters(base) - attention_parameters(base) + atconv
    assert [m.dim for m in mixers] == [a.qkv.in_features if hasattr(a, "qkv") else a.q.in_features
                                       for a in attentions]


@pytest.mark.parametrize("name", PAIRS)
def test_they_train_as_reid_backbones_at_288x144(name):
    created = create_backbone(name, (288, 144))
    assert created.input_size == (288, 144) and created.note is None
    torch.manual_seed(0)
    model = ReIDModel(name, 3, (288, 144)).train()
    output = model(torch.randn(4, 3, 288, 144))
    output.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_no_released_weights_and_a_clear_refusal_for_other_models():
    with pytest.raises(ValueError, match="no released weights"):
        timm.create_model("atconv_pvt_v2_b1", pretrained=True)
    with pytest.raises(ValueError, match="has no Swin or PVTv2 attention"):
        with_atconv(timm.create_model("resnet18"))
