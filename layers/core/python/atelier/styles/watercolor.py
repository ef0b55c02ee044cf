"""Watercolour: a fast form of OpenCV's ``stylization`` (domain-transform smoothing darkened at its edges)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from atelier.styles import _filters as F

VERSION = "1"
DEFAULTS: dict[str, float | int] = {"sigma_s": 60.0, "sigma_r": 0.45}

# The three smoothing passes run on a copy of about this many pixels; a last, short pass at full
# resolution (reaching _REACH pixels each way) restores the fine contours that the edge term draws.
_WORK_PIXELS = 150_000
_REACH = 3
_GUIDE_RADIUS = 1
_GUIDE_EPS = 1e-3
_STRIP = 64
_LIMIT = 254  # 8-bit step costs saturate at 255, one above the limit


def effective_sigma_s(height: int, width: int, sigma_s: float = 60.0) -> float:
    """OpenCV-equivalent ``sigma_s`` for an image of this size (see ``_filters.scale``)."""
    return sigma_s * F.scale(height, width)


def render(bgr: np.ndarray, sigma_s: float = 60.0, sigma_r: float = 0.45) -> np.ndarray:
    """Watercolour; ``sigma_s`` is in pixels at the 3072x2048 reference size."""
    h, w = bgr.shape[:2]
    if h < 2 or w < 2:
        return bgr.copy()
    ss = effective_sigma_s(h, w, sigma_s)
    ratio = ss / max(sigma_r, 1e-6) / 255.0
    # OpenCV's three passes: sigma_h halves each time; the box radius is sqrt(3) * sigma_h.
    radii = [3.0 * ss * 2.0 ** (2 - i) / math.sqrt(63.0) for i in range(3)]

    sx = np.empty((h, w), np.uint8)
    sy = np.empty((h, w), np.uint8)

    def steps(r0: int, r1: int) -> None:
        sx[r0:r1] = F.steps_along(bgr[r0:r1], axis=1)
        top = max(0, r0 - 1)
        sy[r0:r1] = F.steps_along(bgr[top:r1], axis=0)[r0 - top :]

    F.parallel(steps, h, _STRIP * 4)

    a3, b3 = _smooth_coarse(bgr, sx, sy, ratio, radii)
    lut = np.minimum(np.rint((1.0 + ratio * np.arange(256)) * _LIMIT / radii[-1]), 255).astype(np.uint8)
    out = np.empty_like(bgr)

    def finish(r0: int, r1: int) -> None:
        halo = _REACH + 1
        a, b = max(0, r0 - halo), min(h, r1 + halo)
        guide = cv2.cvtColor(bgr[a:b], cv2.COLOR_BGR2GRAY)
        coef = F.upsample_rows(a3, h, w, a, b)
        base = F.upsample_rows(b3, h, w, a, b)
        smooth = coef * guide[:, :, None].astype(np.float32)
        smooth += base
        planes = cv2.split(np.clip(smooth, 0, 255, out=smooth).astype(np.uint8))
        planes = F.nc_pass(planes, cv2.LUT(sx[a:b], lut), _LIMIT, 1, _REACH)
        planes = F.nc_pass(planes, cv2.LUT(sy[a:b], lut), _LIMIT, 0, _REACH)
        # The edge term needs one row either side of the output rows.
        e0, e1 = max(a, r0 - 1), min(b, r1 + 1)
        mag = None
        for p in planes:
            rows = p[e0 - a : e1 - a]
            m = cv2.magnitude(cv2.Sobel(rows, cv2.CV_32F, 1, 0), cv2.Sobel(rows, cv2.CV_32F, 0, 1))
            mag = m if mag is None else cv2.add(mag, m, dst=mag)
        assert mag is not None
        shade = cv2.subtract(1.0, cv2.multiply(mag, 1.0 / 255.0))[r0 - e0 : r1 - e0]
        out[r0:r1] = cv2.merge([cv2.multiply(p[r0 - a : r1 - a], shade, dtype=cv2.CV_8U) for p in planes])

    F.parallel(finish, h, _STRIP)
    return out


def _smooth_coarse(
    bgr: np.ndarray, sx: np.ndarray, sy: np.ndarray, ratio: float, radii: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The three domain-transform passes on a reduced copy, returned as guided-filter maps (a, b)."""
    h, w = bgr.shape[:2]
    f = F.work_factor(h, w, _WORK_PIXELS)
    lh, lw = -(-h // f), -(-w // f)
    small = cv2.resize(bgr, (lw, lh), interpolation=cv2.INTER_AREA)
    planes = [p.astype(np.float32) * (1.0 / 255.0) for p in cv2.split(small)]
    # A reduced step spans w/lw full-size steps: its cost is their sum, so grain still counts.
    cost_x = cv2.resize(sx, (lw, lh), interpolation=cv2.INTER_AREA).astype(np.float32)
    cost_y = cv2.resize(sy, (lw, lh), interpolation=cv2.INTER_AREA).astype(np.float32)
    cost_x = (cost_x * ratio + 1.0) * (w / lw)
    cost_y = (cost_y * ratio + 1.0) * (h / lh)
    for r in radii:
        planes = F.nc_pass(planes, cost_x, r, 1, lw)
        planes = F.nc_pass(planes, cost_y, r, 0, lh)
    guide = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
    a, b = F.guided_coefficients(guide, planes, _GUIDE_RADIUS, _GUIDE_EPS)
    return cv2.merge(a), cv2.merge([x * 255.0 for x in b])
