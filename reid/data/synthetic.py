"""Small synthetic datasets in the exact on-disk layouts of LLCM, VCM-HITSZ, SYSU-MM01 and RegDB.

Identities are learnable across modalities: each person has a body shape (height, head, shoulders, torso and
leg proportions), garment patterns (stripe orientation and frequency, checks) and accessories (bag side, hat)
that the infrared rendering keeps, while it throws colour away: every garment is two materials, each with a
visible colour and an infrared intensity that only partly follows the colour's brightness (as near-infrared
reflectance does), so the pattern survives but the colours do not. Cameras
are fixed environments (background, scale, position, brightness, blur) and every image adds its own pose and
position jitter, so an untrained network does not separate identities well but a trained one does.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments write the same files.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from reid.data.llcm import IR_CAMERAS, VIS_CAMERAS

Layout = Literal["llcm", "vcm", "sysu", "regdb"]
LAYOUTS: tuple[Layout, ...] = ("llcm", "vcm", "sysu", "regdb")
DEFAULT_IDS = {"llcm": 150, "vcm": 40, "sysu": 50, "regdb": 40}
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


def _save(array: np.ndarray, path: Path, modality: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if modality == "ir":
        image = image.convert("L")  # infrared files are single-channel, as real sensors write them
    if path.suffix == ".jpg":
        image.save(path, quality=92)
    else:
        image.save(path)


class _World:
    """People and cameras drawn from one seed."""

    def __init__(self, seed: int, num_ids: int, num_cameras: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.people = [Person.random(self.rng) for _ in range(num_ids)]
        # a dual camera shares its placement between its visible and infrared sensors
        self.cameras = {c: Camera.random(self.rng) for c in range(1, num_cameras + 1)}

    def image(self, pid_index: int, camera: int, modality: str, phase: float | None = None) -> np.ndarray:
        return render(self.people[pid_index], self.cameras[camera], modality, self.rng, phase=phase)


def _split_ids(num_ids: int, test_fraction: float = 0.4) -> tuple[list[int], list[int]]:
    ids = list(range(1, num_ids + 1))
    num_test = max(2, round(num_ids * test_fraction))
    return ids[:-num_test], ids[-num_test:]


def _write_llcm(out: Path, num_ids: int, seed: int) -> None:
    world = _World(seed, num_ids, 9)
    train_ids, test_ids = _split_ids(num_ids)
    rng = world.rng
    lines = {"vis": [], "ir": []}
    for pid in train_ids:
        for modality, folder, cameras in (("vis", "train_vis", VIS_CAMERAS), ("ir", "train_nir", IR_CAMERAS)):
            for camera in rng.choice(list(cameras), 2, replace=False):
                for k in range(2):
                    relative = f"{folder}/cam{camera}/{pid:04d}/{pid:04d}_c{camera:02d}_{k:03d}.jpg"
                    _save(world.image(pid - 1, camera, modality), out / relative, modality)
                    lines[modality].append(f"{relative} {pid}")
    for pid in test_ids:
        for modality, folder, cameras in (("vis", "test_vis", VIS_CAMERAS), ("ir", "test_nir", IR_CAMERAS)):
            for camera in sorted(rng.choice(list(cameras), 3, replace=False)):
                for k in range(2):
                    path = out / folder / f"cam{camera}" / f"{pid:04d}" / f"{pid:04d}_c{camera:02d}_{k:03d}.jpg"
                    _save(world.image(pid - 1, camera, modality), path, modality)
    (out / "idx").mkdir(parents=True, exist_ok=True)
    (out / "idx/train_vis.txt").write_text("\n".join(lines["vis"]) + "\n")
    (out / "idx/train_nir.txt").write_text("\n".join(lines["ir"]) + "\n")
    (out / "idx/test_id.txt").write_text(",".join(str(pid) for pid in test_ids) + "\n")


def _write_sysu(out: Path, num_ids: int, seed: int) -> None:
    world = _World(seed, num_ids, 6)
    rng = world.rng
    for pid in range(1, num_ids + 1):
        cameras = [int(c) for c in rng.choice([1, 2, 4, 5], 2, replace=False)] + [3, 6][:int(rng.integers(1, 3))]
        for camera in sorted(cameras):
            modality = "ir" if camera in (3, 6) else "vis"
            for k in range(1, 5):
                _save(world.image(pid - 1, camera, modality), out / f"cam{camera}" / f"{pid:04d}" / f"{k:04d}.jpg",
                      modality)
    ids = list(range(1, num_ids + 1))
    num_test, num_val = max(2, round(num_ids * 0.4)), max(1, round(num_ids * 0.1))
    (out / "exp").mkdir(parents=True, exist_ok=True)
    (out / "exp/test_id.txt").write_text(",".join(map(str, ids[-num_test:])))
    (out / "exp/val_id.txt").write_text(",".join(map(str, ids[-num_test - num_val:-num_test])))
    (out / "exp/train_id.txt").write_text(",".join(map(str, ids[:-num_test - num_val])))


def _write_regdb(out: Path, num_ids: int, seed: int) -> None:
    world = _World(seed, num_ids, 2)
    files: dict[tuple[int, str], list[str]] = {}
    for pid in range(1, num_ids + 1):
        for modality, folder, camera in (("vis", "Visible", 1), ("ir", "Thermal", 2)):
            for k in range(5):
                relative = f"{folder}/{pid}/{folder[0].lower()}_{pid:04d}_{k}.bmp"
                _save(world.image(pid - 1, camera, modality), out / relative, modality)
                files.setdefault((pid, modality), []).append(relative)
    (out / "idx").mkdir(parents=True, exist_ok=True)
    for t in range(1, 11):
        ids = list(np.random.default_rng(seed + t).permutation(np.arange(1, num_ids + 1)))
        half = len(ids) // 2
        for split, chosen in (("train", sorted(ids[:half])), ("test", sorted(ids[half:]))):
            for modality, word in (("vis", "visible"), ("ir", "thermal")):
                lines = [f"{path} {pid}" for pid in chosen for path in files[(int(pid), modality)]]
                (out / f"idx/{split}_{word}_{t}.txt").write_text("\n".join(lines) + "\n")


def _write_vcm(out: Path, num_ids: int, seed: int) -> None:
    world = _World(seed, num_ids, 12)
    rng = world.rng
    train_ids, test_ids = _split_ids(num_ids)
    for split, folder, ids in (("train", "Train", train_ids), ("test", "Test", test_ids)):
        names, tracks = [], []
        for pid in ids:
            frame_counter: dict[tuple[str, int], int] = {}
            for modality_code, modality in ((1, "ir"), (2, "vis")):
                for track in range(1, 4):
                    camera = int(rng.integers(1, 13))
                    length = int(rng.integers(13, 20)) if track < 3 else int(rng.integers(6, 11))  # some too short
                    start = len(names) + 1
                    phase = rng.uniform()
                    for frame in range(length):
                        key = (modality, camera)
                        frame_counter[key] = frame_counter.get(key, 0) + 1
                        name = f"{pid:04d}M{modality_code}D{camera}T{track}F{frame_counter[key]}.jpg"
                        folder_name = "ir" if modality == "ir" else "rgb"
                        path = out / folder / f"{pid:04d}" / folder_name / f"D{camera}" / f"{frame_counter[key]}.jpg"
                        _save(world.image(pid - 1, camera, modality, phase=(phase + frame / 8) % 1), path, modality)
                        names.append(name)
                    tracks.append(f"{modality_code} {start} {len(names)} {pid} {camera}")
        (out / "info").mkdir(parents=True, exist_ok=True)
        (out / f"info/{split}_name.txt").write_text("\n".join(names) + "\n")
        (out / f"info/track_{split}_info.txt").write_text("\n".join(tracks) + "\n")
        if split == "test":  # the query tracklets are the infrared ones
            query = [str(i) for i, line in enumerate(tracks, 1) if line.startswith("1 ")]
            (out / "info/query_IDX.txt").write_text(" ".join(query) + "\n")


_WRITERS = {"llcm": _write_llcm, "vcm": _write_vcm, "sysu": _write_sysu, "regdb": _write_regdb}


def make_dataset(layout: Layout, out: str | Path, num_ids: int | None = None, seed: int = 0,
                 overwrite: bool = False) -> Path:
    """Write a synthetic dataset in ``layout``'s exact on-disk format to ``out`` and return ``out``.

    The dataset is written to a temporary sibling folder and renamed into place, so an interrupted run never
    leaves a half-written dataset behind.

    Args:
        layout: "llcm", "vcm", "sysu" or "regdb".
        out: Dataset root to create.
        num_ids: Number of identities (default: a size that trains in minutes on two CPU cores).
        seed: Random seed; the same arguments give the same files.
        overwrite: Replace an existing ``out``.
    """
    from reid.errors import ReidError

    if layout not in _WRITERS:
        raise ReidError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    num_ids = num_ids or DEFAULT_IDS[layout]
    if num_ids < 4:
        raise ReidError(f"--ids must be at least 4, got {num_ids}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ReidError(f"{out} already exists (pass --overwrite to replace it)")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    _WRITERS[layout](staging, num_ids, seed)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out
