import numpy as np
import pytest
import torch

from reid.data.transforms import ChannelExchange, eval_pipeline, frame_indices, train_pipelines
from reid.settings import AugmentConfig

CONFIG = AugmentConfig(height=64, width=32, pad=4)


def test_train_and_test_outputs_have_model_shape_and_dtype():
    image = np.random.default_rng(0).integers(0, 256, (100, 40, 3), dtype=np.uint8)
    for pipeline in (*train_pipelines(CONFIG).values(), eval_pipeline(CONFIG)):
        out = pipeline([image])
        assert out.shape == (1, 3, 64, 32) and out.dtype == torch.float32


def test_eval_pipeline_is_resize_and_normalise():
    image = np.full((10, 10, 3), 255, dtype=np.uint8)
    out = eval_pipeline(CONFIG)([image])
    expected = (1 - torch.tensor(CONFIG.mean)) / torch.tensor(CONFIG.std)
    torch.testing.assert_close(out[0, :, 5, 5], expected.float(), rtol=1e-5, atol=1e-5)


def test_one_draw_for_all_frames_of_a_tracklet():
    frame = np.random.default_rng(1).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    pipeline = train_pipelines(AugmentConfig(height=64, width=32, flip=0.5, erasing=1.0, channel_augment=1.0))["vis"]
    for seed in range(5):
        pipeline.set_random_seed(seed)
        out = pipeline([frame] * 4)
        assert all(torch.equal(out[0], out[k]) for k in range(1, 4))


def test_channel_exchange_replicates_one_channel_or_gray():
    image = np.dstack([np.full((2, 2), v, np.uint8) for v in (10, 100, 200)])
    transform = ChannelExchange(p=1.0)
    seen = set()
    for seed in range(40):
        transform.set_random_seed(seed)
        out = transform(image=image)["image"]
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        seen.add(int(out[0, 0, 0]))
    assert seen == {10, 100, 200, round(10 * 0.299 + 100 * 0.587 + 200 * 0.114)}


def test_infrared_pipeline_has_no_channel_augmentation():
    names = {m: [type(t).__name__ for t in p.augment.transforms] for m, p in train_pipelines(CONFIG).items()}
    assert "ChannelExchange" in names["vis"] and "ChannelExchange" not in names["ir"]


@pytest.mark.parametrize("num_frames,seq_len", [(12, 6), (30, 6), (7, 6), (3, 6)])
def test_frame_indices(num_frames, seq_len):
    evenly = frame_indices(num_frames, seq_len)
    assert len(evenly) == seq_len and evenly == sorted(evenly) and max(evenly) < num_frames
    rng = np.random.default_rng(0)
    sampled = frame_indices(num_frames, seq_len, rng)
    if num_frames >= seq_len:
        chunks = np.array_split(np.arange(num_frames), seq_len)
        assert evenly == [int(c[0]) for c in chunks]
        assert all(s in chunk for s, chunk in zip(sampled, chunks, strict=True))
    else:
        assert evenly == sampled == list(range(num_frames)) + [num_frames - 1] * (seq_len - num_frames)
