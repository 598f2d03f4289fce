import numpy as np
from PIL import Image

from reid.data.images import image_problem, load_image, to_rgb_array


def test_modes_become_three_channel_uint8(tmp_path):
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    out = to_rgb_array(gray)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()

    palette = gray.convert("P")
    assert to_rgb_array(palette).shape == (8, 8, 3)

    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))  # fully transparent -> black background
    assert (to_rgb_array(rgba) == 0).all()

    thermal = Image.fromarray(np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16))
    stretched = to_rgb_array(thermal)[..., 0]
    assert stretched.min() == 0 and stretched.max() == 255 and stretched[0, 1] == round(1000 / 4000 * 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (6, 2), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).shape == (6, 2, 3)


def test_problems_name_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.new("L", (5, 5)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert image_problem(good) is None
    assert image_problem(bad).startswith(f"{bad}: unreadable image")
    assert image_problem(tmp_path / "none.jpg") == f"{tmp_path / 'none.jpg'}: missing image"


def test_decompression_bombs_are_problems_not_crashes(tmp_path, monkeypatch):
    import pytest

    from reid.data import DatasetError

    path = tmp_path / "huge.png"
    Image.new("L", (200, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 20,000 pixels is then over PIL's 2x bomb limit
    assert image_problem(path).startswith(f"{path}: image too large to decode safely")
    with pytest.raises(DatasetError, match="image too large to decode safely"):
        load_image(path)
