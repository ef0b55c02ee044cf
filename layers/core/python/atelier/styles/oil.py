"""Oil painting: a smooth Kuwahara filter for flat, edge-hugging dabs, plus brush-stroke impasto lighting."""

from __future__ import annotations

import cv2
import numpy as np

from atelier.styles import _filters as F

VERSION = "1"
DEFAULTS: dict[str, float | int] = {"brush": 0.005, "sharpness": 8.0, "impasto": 0.6}

# The painting is made on a copy of about this many pixels and enlarged: dabs are many pixels wide.
_WORK_PIXELS = 400_000
_SEED = 20240917
_TILE_SIZE = 256
_TILE: dict[str, np.ndarray] = {}


def render(bgr: np.ndarray, brush: float = 0.005, sharpness: float = 8.0, impasto: float = 0.6) -> np.ndarray:
    """``brush`` is the dab radius as a share of the longer side; ``impasto`` the strength of the relief."""
    h, w = bgr.shape[:2]
    if h < 3 or w < 3:
        # OpenCV takes a 1x1 array for a scalar; paint a slightly larger copy and cut it back.
        big = cv2.copyMakeBorder(bgr, 0, max(0, 3 - h), 0, max(0, 3 - w), cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(render(big, brush, sharpness, impasto)[:h, :w])
    f = F.work_factor(h, w, _WORK_PIXELS)
    small = F.area_down(bgr, f)
    radius = max(1, round(brush * max(h, w) / f))
    paint = _kuwahara(small, radius, sharpness)
    light = _relief(paint, radius, impasto)
    out = np.empty_like(bgr)

    def enlarge(r0: int, r1: int) -> None:
        colour = F.up_rows(paint, f, r0, r1, w) if f > 1 else paint[r0:r1]
        shade = F.up_rows(light, f, r0, r1, w) if f > 1 else light[r0:r1]
        out[r0:r1] = cv2.multiply(colour, cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR), scale=1.0 / 128.0)

    F.parallel(enlarge, h, 256)
    return out


def _kuwahara(bgr: np.ndarray, radius: int, sharpness: float) -> np.ndarray:
    """Each pixel takes the mean colour of its four quadrant windows, weighted towards the least varied."""
    h, w = bgr.shape[:2]
    pad = radius
    size = (radius + 1, radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        x = cv2.copyMakeBorder(x, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        # Anchored at the top-left corner: element (y, x) is the mean of the window starting there.
        return cv2.boxFilter(x, cv2.CV_32F, size, anchor=(0, 0), borderType=cv2.BORDER_REFLECT)

    luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    means = [box(p) for p in cv2.split(bgr)]
    mean_l = box(luma)
    var = cv2.subtract(box(cv2.multiply(luma, luma)), cv2.multiply(mean_l, mean_l))
    np.maximum(var, 0.0, out=var)
    np.add(var, 1.0, out=var)
    cv2.pow(var, -0.5 * sharpness, dst=var)  # now the weight of the window starting at each pixel
    accs = [np.zeros((h, w), np.float32) for _ in means]
    wsum = np.zeros((h, w), np.float32)
    for dy in (0, radius):
        for dx in (0, radius):
            # The quadrant windows of pixel (y, x) start at (y - dy, x - dx).
            sl = np.s_[pad - dy : pad - dy + h, pad - dx : pad - dx + w]
            weight = var[sl]
            cv2.accumulate(weight, wsum)
            for acc, m in zip(accs, means, strict=True):
                cv2.accumulateProduct(m[sl], weight, acc)
    return cv2.merge([cv2.convertScaleAbs(cv2.divide(acc, wsum)) for acc in accs])


def _relief(paint: np.ndarray, radius: int, strength: float) -> np.ndarray:
    """Lighting (128 = unchanged) from a height map of the paint plus strokes that follow its contours."""
    h, w = paint.shape[:2]
    luma = cv2.cvtColor(paint, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    k = (2 * radius + 1, 2 * radius + 1)
    # Structure tensor: (c, s) is the doubled gradient angle; strokes run across the gradient.
    c = cv2.subtract(cv2.blur(cv2.multiply(gx, gx), k), cv2.blur(cv2.multiply(gy, gy), k))
    s = cv2.blur(cv2.multiply(gx, gy), k) * np.float32(2.0)
    norm = cv2.magnitude(c, s) + np.float32(1e-12)
    noise = _noise(h, w)
    length = 2 * radius + 1
    strokes = np.zeros((h, w), np.float32)
    wsum = np.full((h, w), 1e-6, np.float32)
    # Smear the noise along four directions and blend by how well each follows the contours.
    for angle, along, sign in ((0.0, c, -1.0), (90.0, c, 1.0), (45.0, s, -1.0), (135.0, s, 1.0)):
        weight = np.maximum(cv2.divide(along, norm, scale=sign), 0.0)
        smeared = cv2.filter2D(
            noise, -1, _line_kernel(length, np.deg2rad(angle)), borderType=cv2.BORDER_REFLECT
        )
        cv2.accumulateProduct(smeared, weight, strokes)
        cv2.accumulate(weight, wsum)
    cv2.divide(strokes, wsum, dst=strokes)
    # Smeared unit noise has a spread of about 1/sqrt(length); bring it back to about 1.
    height = cv2.GaussianBlur(luma, (0, 0), max(0.5, radius / 3.0))
    cv2.scaleAdd(strokes, 0.05 * np.sqrt(length), height * 4.0, dst=height)
    # Light from the upper left.
    slope = cv2.add(
        cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    )
    return cv2.convertScaleAbs(slope, alpha=-64.0 * strength, beta=128.0)


def _noise(h: int, w: int) -> np.ndarray:
    """Fixed zero-mean unit noise (a seeded tile repeated), so renders are reproducible."""
    tile = _TILE.get("noise")
    if tile is None:
        rng = np.random.default_rng(_SEED)
        tile = _TILE["noise"] = rng.standard_normal((_TILE_SIZE, _TILE_SIZE), dtype=np.float32)
    reps = (-(-h // _TILE_SIZE), -(-w // _TILE_SIZE))
    return np.ascontiguousarray(np.tile(tile, reps)[:h, :w])


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line of ``length`` pixels at ``angle`` (radians)."""
    ker = np.zeros((length, length), np.float32)
    c = (length - 1) / 2.0
    dx, dy = np.cos(angle), np.sin(angle)
    for t in np.linspace(-c, c, 2 * length):
        ker[round(c + t * dy), round(c + t * dx)] = 1.0
    return ker / ker.sum()
