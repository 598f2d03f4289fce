"""Rank-list pictures: each query with its top-k gallery matches, green for correct and red for wrong (grey
when the query's identity is unknown). The rank lists themselves are ``reid.retrieval``'s."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from reid.data.images import load_image
from reid.data.samples import Sample
from reid.io import atomic_write
from reid.retrieval import RankList

TILE = (128, 64)  # height, width of each thumbnail
BORDER = 4
GREEN, RED, BLUE, GREY = (40, 170, 60), (210, 40, 40), (60, 110, 220), (150, 150, 150)


def _thumbnail(sample: Sample, colour: tuple[int, int, int] | None) -> Image.Image:
    image = Image.fromarray(load_image(sample.shown_frame)).resize((TILE[1], TILE[0]))
    framed = Image.new("RGB", (TILE[1] + 2 * BORDER, TILE[0] + 2 * BORDER), colour or (255, 255, 255))
    framed.paste(image, (BORDER, BORDER))
    return framed


def draw_rank_lists(panels: dict[str, list[RankList]], path: str | Path, title: str = "") -> Path:
    """Save one picture with a column of rank lists per panel (e.g. per search direction), side by side."""
    font = ImageFont.load_default()
    tile_w, tile_h = TILE[1] + 2 * BORDER, TILE[0] + 2 * BORDER
    top_k = max((len(r.matches) for lists in panels.values() for r in lists), default=0)
    rows = max((len(lists) for lists in panels.values()), default=0)
    panel_w = (top_k + 1) * (tile_w + 4) + 24
    header, caption = 36, 26  # two caption lines: score, then identity and camera
    canvas = Image.new("RGB", (max(1, len(panels)) * panel_w, header + rows * (tile_h + caption + 8)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 4), title, fill=(0, 0, 0), font=font)
    for column, (name, lists) in enumerate(panels.items()):
        left = column * panel_w
        draw.text((left + 8, 20), f"{name}: query (blue), top-{top_k} (green = same identity, red = different, "
                              "grey = query identity unknown)", fill=(0, 0, 0), font=font)
        for row, ranks in enumerate(lists):
            y = header + row * (tile_h + caption + 8)
            canvas.paste(_thumbnail(ranks.query, BLUE), (left + 4, y))
            caption_text = f"id {ranks.query.pid} c{ranks.query.camid}" if ranks.query.pid >= 0 else "id ?"
            draw.text((left + 4, y + tile_h), caption_text, fill=(0, 0, 0), font=font)
            for k, (match, ok, score) in enumerate(zip(ranks.matches, ranks.correct, ranks.scores, strict=True)):
                x = left + 4 + (k + 1) * (tile_w + 4) + 12
                canvas.paste(_thumbnail(match, GREY if ok is None else GREEN if ok else RED), (x, y))
                label = f"id {match.pid} c{match.camid}" if match.pid >= 0 else f"id ? c{match.camid}"
                draw.text((x, y + tile_h), f"{score:.2f}\n{label}", fill=(0, 0, 0), font=font, spacing=1)
    path = Path(path)
    return atomic_write(path, lambda temporary: canvas.save(temporary, format="PNG"))
