"""The photo corpus the styles are judged on: bundled sample photos, phone-sized copies with sensor grain.

Every photo comes from a wheel the dev install already has (scikit-image's and scikit-learn's sample
images), so nothing is downloaded. Night and bright scenes are made from them the way a camera would
record them: exposure in linear light, clipped, then sensor noise and JPEG.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

PHONE_SIZE = (4000, 3000)  # 12 MP, a phone camera's 4:3 frame


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        rgb = getattr(data, name)()
        if isinstance(rgb, tuple):  # a stereo pair: the left view
            rgb = rgb[0]
        if rgb.ndim == 2:
            return cv2.cvtColor(rgb, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(rgb[:, :, :3], cv2.COLOR_RGB2BGR)

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return cv2.cvtColor(load_sample_image(name), cv2.COLOR_RGB2BGR)

    return load


def _exposed(load: Callable[[], np.ndarray], stops: float) -> Callable[[], np.ndarray]:
    def exposed() -> np.ndarray:
        return exposure(load(), stops)

    return exposed


# name -> (what a person would call the scene, loader)
PHOTOS: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "astronaut": ("portrait", _skimage("astronaut")),
    "chelsea": ("animal, fur", _skimage("chelsea")),
    "coffee": ("still life", _skimage("coffee")),
    "rocket": ("sky", _skimage("rocket")),
    "motorcycle": ("street, machine", _skimage("stereo_motorcycle")),
    "china": ("architecture", _sklearn("china.jpg")),
    "flower": ("nature, close-up", _sklearn("flower.jpg")),
    "camera": ("portrait, black and white", _skimage("camera")),
    "brick": ("texture", _skimage("brick")),
    "night": ("night", _exposed(_skimage("astronaut"), -3.0)),
    "night_street": ("night", _exposed(_sklearn("china.jpg"), -3.5)),
    "bright": ("bright, over-exposed", _exposed(_skimage("coffee"), 1.3)),
    "bright_sky": ("bright sky", _exposed(_sklearn("flower.jpg"), 1.5)),
}


def photo(name: str) -> np.ndarray:
    """One corpus photo as 8-bit BGR at its own size."""
    return PHOTOS[name][1]()


def exposure(bgr: np.ndarray, stops: float) -> np.ndarray:
    """The photo exposed ``stops`` brighter (negative: darker), in linear light, clipped like a sensor."""
    lin = (bgr.astype(np.float32) / 255.0) ** 2.2 * (2.0**stops)
    return np.clip(np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def at_pixels(bgr: np.ndarray, pixels: int) -> np.ndarray:
    """The photo resized to about ``pixels`` pixels, aspect kept (area down, cubic up)."""
    h, w = bgr.shape[:2]
    f = math.sqrt(pixels / (h * w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)


def phone_sized(bgr: np.ndarray) -> np.ndarray:
    """The photo enlarged into a 12 MP frame (centre crop to 4:3 or 3:4, cubic, slight sharpening)."""
    h, w = bgr.shape[:2]
    tw, th = PHONE_SIZE if w >= h else PHONE_SIZE[::-1]
    if w * th > h * tw:
        cw = h * tw // th
        bgr = bgr[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = w * th // tw
        bgr = bgr[(h - ch) // 2 : (h - ch) // 2 + ch]
    big = cv2.resize(bgr, (tw, th), interpolation=cv2.INTER_CUBIC)
    soft = cv2.GaussianBlur(big, (0, 0), 2.0)
    return cv2.addWeighted(big, 1.5, soft, -0.5, 0)


def sensor_grain(bgr: np.ndarray, seed: int = 0, level: float = 2.5, quality: int = 85) -> np.ndarray:
    """Poisson-Gaussian sensor noise of about ``level`` grey levels, then a JPEG round trip.

    Shot noise grows with the signal (variance proportional to it), read noise is constant; at mid grey
    the two together have a spread of ``level``. The JPEG step is what a phone then does to it.
    """
    rng = np.random.default_rng(seed)
    img = bgr.astype(np.float32)
    read = level * 0.5
    shot_gain = (level**2 - read**2) / 128.0  # variance per grey level of signal
    sigma = np.sqrt(np.maximum(img, 0.0) * shot_gain + read**2)
    noisy = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert decoded is not None
    return decoded


def lattice(width: int, height: int, bar: int = 4, period: int = 8) -> np.ndarray:
    """A 6 MP-style test card: the coffee photo with a square of grid lines ``bar`` px wide in its middle.

    Returns BGR; the lattice square is dark grid lines on light ground, a quarter of the shorter side.
    """
    base = cv2.resize(photo("coffee"), (width, height), interpolation=cv2.INTER_CUBIC)
    side = min(width, height) // 4
    y0, x0 = (height - side) // 2, (width - side) // 2
    yy, xx = np.mgrid[0:side, 0:side]
    lines = ((yy % period) < bar) | ((xx % period) < bar)
    patch = np.where(lines, 40, 215).astype(np.uint8)
    base[y0 : y0 + side, x0 : x0 + side] = patch[:, :, None]
    return base


def lattice_box(width: int, height: int) -> tuple[int, int, int]:
    """``(y0, x0, side)`` of the lattice square in ``lattice(width, height)``."""
    side = min(width, height) // 4
    return (height - side) // 2, (width - side) // 2, side
