"""Rank-list pictures: each match framed in its outcome's colour and captioned with its identity and camera."""
import numpy as np
from PIL import Image
from rank_samples import image_file

from reid.data.samples import Sample
from reid.retrieval import RankList
from reid.visualize import BLUE, BORDER, GREEN, GREY, RED, TILE, draw_rank_lists


def border_colour(canvas, x, y):
    return canvas.getpixel((x + 1, y + 1))


def test_drawing_colours_each_match_by_its_outcome(four_samples, tmp_path):
    samples, _ = four_samples
    known = RankList(Sample(image_file(tmp_path, "q1", 200), 1, 1, "ir"), samples[:3], [0.9, 0.8, 0.7])
    unknown = RankList(Sample(image_file(tmp_path, "q2", 90), -1, -1, "ir"), samples[:2], [0.5, 0.4])
    path = draw_rank_lists({"panel": [known, unknown]}, tmp_path / "ranks.png", "title")
    canvas = Image.open(path).convert("RGB")
    tile_w, tile_h = TILE[1] + 2 * BORDER, TILE[0] + 2 * BORDER
    header, caption = 36, 26
    for row, expected in enumerate([[GREEN, RED, GREEN], [GREY, GREY]]):
        y = header + row * (tile_h + caption + 8)
        assert border_colour(canvas, 4, y) == BLUE
        for k, colour in enumerate(expected):
            x = 4 + (k + 1) * (tile_w + 4) + 12
            assert border_colour(canvas, x, y) == colour, (row, k)
            inside = canvas.getpixel((x + BORDER + TILE[1] // 2, y + BORDER + TILE[0] // 2))
            assert inside == (40 * k,) * 3  # the match's own thumbnail


def test_each_match_is_captioned_with_its_identity_and_camera(four_samples, tmp_path):
    """Two pictures whose matches differ only in one match's identity (then camera) differ under that tile."""
    samples, _ = four_samples
    query = Sample(image_file(tmp_path, "q", 200), 1, 1, "ir")
    tile_w, tile_h = TILE[1] + 2 * BORDER, TILE[0] + 2 * BORDER
    x = 4 + 2 * (tile_w + 4) + 12  # the second match
    drawn = {}
    for name, second in (("base", samples[1]), ("other id", Sample(samples[1].path, 7, samples[1].camid, "vis")),
                         ("other camera", Sample(samples[1].path, samples[1].pid, 9, "vis"))):
        path = draw_rank_lists({"p": [RankList(query, [samples[0], second], [0.9, 0.8])]}, tmp_path / f"{name}.png")
        canvas = np.asarray(Image.open(path).convert("L"))
        drawn[name] = canvas[36 + tile_h:36 + tile_h + 26, x:x + tile_w]
        assert (drawn[name] < 128).any()  # a caption is there
    assert (drawn["base"] != drawn["other id"]).any() and (drawn["base"] != drawn["other camera"]).any()
