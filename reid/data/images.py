"""Image decoding with PIL: any mode in, 3-channel uint8 out (infrared channels replicated)."""
from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from reid.data.errors import DatasetError


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from any PIL image: EXIF orientation applied, palette and alpha flattened (on black),
    16-bit (thermal) grayscale stretched from its own min..max, grayscale replicated to three channels."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("P", "PA", "LA", "RGBA") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"))


def _too_large(error: Image.DecompressionBombError) -> str:
    # PIL refuses images of more than twice Image.MAX_IMAGE_PIXELS, a guard against decompression bombs
    return f"image too large to decode safely ({error.args[0].split('(')[0].strip() if error.args else error})"


def _not_regular(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened as an image file without blocking (a FIFO, a device) or at all, or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{path}: missing image"
    except (OSError, ValueError) as error:
        return f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})"
    return None if stat.S_ISREG(mode) else f"{path}: not a regular file"


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8; errors name the file."""
    if problem := _not_regular(path):
        raise DatasetError(Path(path).parent, [problem])
    try:
        with Image.open(path) as image:
            return to_rgb_array(image)
    except FileNotFoundError:
        raise DatasetError(Path(path).parent, [f"{path}: missing image"]) from None
    except Image.DecompressionBombError as error:
        raise DatasetError(Path(path).parent, [f"{path}: {_too_large(error)}"]) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DatasetError(Path(path).parent, [f"{path}: unreadable image ({error})"]) from None


def image_problem(path: str | Path) -> str | None:
    """Why an image cannot be used, or None. Decodes at reduced scale (JPEG draft mode) to catch truncation fast."""
    if problem := _not_regular(path):
        return problem
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("L", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            if image.width == 0 or image.height == 0:
                return f"{path}: empty image"
    except FileNotFoundError:
        return f"{path}: missing image"
    except Image.DecompressionBombError as error:
        return f"{path}: {_too_large(error)}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return f"{path}: unreadable image ({error})"
    return None


def image_problems(
        paths: Iterable[str],
        progress: Callable[[int], None] | None = None,
        workers: int = 4,
) -> list[str]:
    """Check every image (PIL releases the GIL while decoding, so threads help); problems in input order."""
    paths = list(paths)
    problems: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(paths), 512):
            batch = paths[start:start + 512]
            problems.extend(p for p in pool.map(image_problem, batch) if p)
            if progress:
                progress(len(batch))
    return problems
