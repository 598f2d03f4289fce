"""Small synthetic datasets in the exact on-disk layouts of LLCM, VCM-HITSZ, SYSU-MM01 and RegDB.

Identities are learnable across modalities: each person has a body shape (height, head, shoulders, torso and
leg proportions), garment patterns (stripe orientation and frequency, checks) and accessories (bag side, hat)
that the infrared rendering keeps, while it throws colour away: every garment is two materials, each with a
visible colour and an infrared intensity that only partly follows the colour's brightness (as near-infrared
reflectance does), so the pattern survives but the colours do not. Cameras
are fixed environments (background, scale, position, brightness, blur) and every image adds its own pose and
position jitter, so an untrained network does not separate identities well but a trained one does.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments write the same files. Each
reader's ``write_synthetic`` lays the rendered images out in its dataset's format; ``reid.data.make_dataset``
writes one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

IMAGE_SIZE = (128, 64)  # height, width
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Garment:
    pattern: int  # 0 solid, 1 horizontal stripes, 2 vertical stripes, 3 checks, 4 diagonal stripes
    stripes: float  # pattern periods over the garment's height
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]  # visible colour of each material
    heat: tuple[float, float]  # infrared intensity of each material


@dataclass(frozen=True)
class Person:
    height: float  # of the frame
    head: float  # radius, of the body height
    shoulders: float  # torso width, of the body height
    torso: float  # torso length, of the body height
    leg_gap: float
    upper: Garment
    lower: Garment
    bag: int  # 0 none, -1 left, 1 right
    hat: bool
    skin: tuple[float, float, float]

    @classmethod
    def random(cls, rng: np.random.Generator) -> Person:
        def garment() -> Garment:
            pattern = int(rng.integers(0, 5))
            first = rng.uniform(0, 1, 3)
            second = rng.uniform(0, 1, 3)
            while pattern and np.abs(first - second).sum() < 0.6:  # a pattern must show in colour too
                second = rng.uniform(0, 1, 3)
            # Near-infrared brightness partly follows visible reflectance and partly depends on the material,
            # so it neither equals the gray image nor ignores it; a pattern keeps a visible infrared contrast.
            heat = [float(np.clip(0.75 * (colour @ LUMA) + 0.25 * rng.uniform(0.1, 0.9), 0.05, 0.95))
                    for colour in (first, second)]
            if pattern and abs(heat[1] - heat[0]) < 0.2:
                heat[1] = heat[0] + 0.25 if heat[0] < 0.6 else heat[0] - 0.25
            return Garment(pattern, float(rng.uniform(2.0, 6.0)), (tuple(first), tuple(second)), tuple(heat))

        return cls(
            height=float(rng.uniform(0.72, 0.92)), head=float(rng.uniform(0.055, 0.085)),
            shoulders=float(rng.uniform(0.2, 0.32)), torso=float(rng.uniform(0.28, 0.38)),
            leg_gap=float(rng.uniform(0.0, 0.06)), upper=garment(), lower=garment(),
            bag=int(rng.choice([-1, 0, 0, 1])), hat=bool(rng.random() < 0.3),
            skin=tuple(np.array([0.85, 0.65, 0.5]) * rng.uniform(0.5, 1.1)),
        )


@dataclass(frozen=True)
class Camera:
    scale: float
    shift: float  # horizontal offset, of the width
    brightness: float
    blur: float
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    ir_background: float
    noise: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Camera:
        return cls(scale=float(rng.uniform(0.82, 1.05)), shift=float(rng.uniform(-0.08, 0.08)),
                   brightness=float(rng.uniform(0.45, 1.15)), blur=float(rng.uniform(0.0, 1.2)),
                   background=(tuple(rng.uniform(0.25, 0.75, 3)), tuple(rng.uniform(0.25, 0.75, 3))),
                   ir_background=float(rng.uniform(0.08, 0.3)), noise=float(rng.uniform(0.02, 0.06)))


def _pattern(kind: int, stripes: float, y: np.ndarray, x: np.ndarray, top: float, span: float) -> np.ndarray:
    period = span / stripes
    rows, columns = np.floor((y - top) / period), np.floor(x / (period * 0.8))
    if kind == 1:
        return rows % 2 == 1
    if kind == 2:
        return columns % 2 == 1
    if kind == 3:
        return (rows + columns) % 2 == 1
    if kind == 4:
        return np.floor((y - top + x) / period) % 2 == 1
    return np.zeros_like(y, dtype=bool)


def render(person: Person, camera: Camera, modality: str, rng: np.random.Generator,
           size: tuple[int, int] = IMAGE_SIZE, phase: float | None = None) -> np.ndarray:
    """One (H, W, 3) uint8 image of ``person`` seen by ``camera`` in "vis" or "ir".

    ``phase`` (0..1) sets the walking pose for consecutive frames of a tracklet; None draws one at random.
    """
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform() if phase is None else phase
    swing = np.sin(2 * np.pi * phase)
    body = person.height * camera.scale * rng.uniform(0.95, 1.05) * height
    top = (height - body) / 2 + rng.uniform(-0.04, 0.04) * height
    centre = width / 2 + (camera.shift + rng.uniform(-0.06, 0.06)) * width

    head_r = person.head * body
    head_y = top + head_r
    torso_top, torso_bottom = top + 2.1 * head_r, top + 2.1 * head_r + person.torso * body
    half_width = person.shoulders * body / 2
    taper = half_width * (1 - 0.2 * (y - torso_top) / max(1.0, torso_bottom - torso_top))
    legs_bottom = top + body
    leg_half = 0.055 * body
    leg_offset = (person.leg_gap * body / 2 + leg_half) + 0.04 * body * swing * np.array([1, -1])
    arm_half = 0.035 * body

    head = (x - centre) ** 2 + (y - head_y) ** 2 <= head_r ** 2
    torso = (y >= torso_top) & (y <= torso_bottom) & (np.abs(x - centre) <= taper)
    arms = np.zeros_like(head)
    for side, sway in ((-1, swing), (1, -swing)):
        arm_x = centre + side * (half_width + arm_half) + 0.03 * body * sway * (y - torso_top) / body
        arms |= (y >= torso_top) & (y <= torso_top + 0.36 * body) & (np.abs(x - arm_x) <= arm_half)
    legs = np.zeros_like(head)
    for offset in leg_offset:
        legs |= (y > torso_bottom) & (y <= legs_bottom) & (np.abs(x - (centre + offset)) <= leg_half)
    hat = person.hat & (np.abs(x - centre) <= head_r * 1.25) & (y >= head_y - head_r * 1.45) & (
        y <= head_y - 0.5 * head_r)
    bag = np.zeros_like(head)
    if person.bag:
        bag_x = centre + person.bag * (half_width + 0.05 * body)
        bag_y = torso_top + 0.45 * (torso_bottom - torso_top)
        bag = ((x - bag_x) / (0.07 * body)) ** 2 + ((y - bag_y) / (0.13 * body)) ** 2 <= 1

    upper_alt = _pattern(person.upper.pattern, person.upper.stripes, y, x - centre, torso_top,
                         torso_bottom - torso_top)
    lower_alt = _pattern(person.lower.pattern, person.lower.stripes, y, x - centre, torso_bottom,
                         legs_bottom - torso_bottom)
    layers = [  # painted in order, later layers on top
        (legs, person.lower, lower_alt),
        (torso | arms, person.upper, upper_alt),
    ]
    # One scene for both sensors of a dual camera: the infrared background follows the visible one's luminance.
    gradient = (y / height)[..., None]
    first, second = np.array(camera.background[0]), np.array(camera.background[1])
    scene = first * (1 - gradient) + second * gradient
    scene = scene + 0.05 * rng.standard_normal((height // 8 + 1, width // 8 + 1, 1)).repeat(8, 0).repeat(8, 1)[
        :height, :width]
    if modality == "vis":
        canvas = scene
        for mask, garment, alternate in layers:
            colours = np.where(alternate[..., None], np.array(garment.colours[1]), np.array(garment.colours[0]))
            canvas = np.where(mask[..., None], colours, canvas)
        canvas = np.where(head[..., None], np.array(person.skin), canvas)
        canvas = np.where(hat[..., None], np.array([0.15, 0.15, 0.2]), canvas)
        canvas = np.where(bag[..., None], np.array([0.35, 0.25, 0.15]), canvas)
        canvas = canvas * camera.brightness * rng.uniform(0.9, 1.1)
    else:
        canvas = camera.ir_background + 0.7 * (scene @ LUMA)
        for mask, garment, alternate in layers:
            canvas = np.where(mask, np.where(alternate, garment.heat[1], garment.heat[0]), canvas)
        canvas = np.where(head, 0.9, canvas)  # skin reflects near-infrared strongly
        canvas = np.where(hat, 0.3, canvas)
        canvas = np.where(bag, 0.3, canvas)
        canvas = np.repeat(canvas[..., None], 3, axis=2)
    canvas = canvas + camera.noise * rng.standard_normal(canvas.shape[:2])[..., None]
    image = Image.fromarray(np.clip(canvas * 255, 0, 255).astype(np.uint8))
    if camera.blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(camera.blur))
    return np.asarray(image)


def save_image(array: np.ndarray, path: Path, modality: str) -> None:
    """Write a rendered image (infrared as one channel, as real sensors write it), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if modality == "ir":
        image = image.convert("L")  # infrared files are single-channel, as real sensors write them
    if path.suffix == ".jpg":
        image.save(path, quality=92)
    else:
        image.save(path)


class World:
    """People and cameras drawn from one seed."""

    def __init__(self, seed: int, num_ids: int, num_cameras: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.people = [Person.random(self.rng) for _ in range(num_ids)]
        # a dual camera shares its placement between its visible and infrared sensors
        self.cameras = {c: Camera.random(self.rng) for c in range(1, num_cameras + 1)}

    def image(self, pid_index: int, camera: int, modality: str, phase: float | None = None) -> np.ndarray:
        return render(self.people[pid_index], self.cameras[camera], modality, self.rng, phase=phase)


def split_ids(num_ids: int, test_fraction: float = 0.4) -> tuple[list[int], list[int]]:
    """Identities 1..num_ids split into training and test (the last ``test_fraction``, at least 2)."""
    ids = list(range(1, num_ids + 1))
    num_test = max(2, round(num_ids * test_fraction))
    return ids[:-num_test], ids[-num_test:]
