"""The torch-free setting types: the same values as the libraries they stand for."""
import pytest

from reid.errors import ReidError
from reid.settings import AMP_MODES, COMPILE_MODES, DEVICES, IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, parse_size


def test_imagenet_statistics_are_timms():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    assert (IMAGENET_MEAN, IMAGENET_STD) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert AugmentConfig().mean == IMAGENET_MEAN


def test_choices():
    assert DEVICES == ("auto", "cpu", "cuda") and AMP_MODES == ("auto", "off", "bf16", "fp16")
    assert COMPILE_MODES == ("auto", "off", "default", "max-autotune", "reduce-overhead")


def test_sizes_parse_or_name_the_option():
    assert parse_size("288x144") == (288, 144) and parse_size("64X32") == (64, 32)
    for bad in ("big", "0x5", "288"):
        with pytest.raises(ReidError, match="--input-size"):
            parse_size(bad, "--input-size")
