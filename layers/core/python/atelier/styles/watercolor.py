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

    f = F.work_factor(h, w, _WORK_PIXELS)
    coef_a, coef_b = _smooth_coarse(bgr, sx, sy, f, ratio, radii)
    table = np.minimum(np.rint((1.0 + ratio * np.arange(256)) * _LIMIT / radii[-1]), 65535)
    lut = table.astype(np.uint16)
    out = np.empty_like(bgr)

    def finish(r0: int, r1: int) -> None:
        halo = _REACH + 1
        a, b = max(0, r0 - halo), min(h, r1 + halo)
        guide = cv2.cvtColor(bgr[a:b], cv2.COLOR_BGR2GRAY).astype(np.float32)
        planes = []
        for ca, cb in zip(coef_a, coef_b, strict=True):
            q = cv2.multiply(F.up_rows(ca, f, a, b, w), guide)
            cv2.add(q, F.up_rows(cb, f, a, b, w), dst=q)
            planes.append(cv2.convertScaleAbs(np.maximum(q, 0.0, out=q)).astype(np.uint16))
        planes = F.nc_pass(planes, cv2.LUT(sx[a:b], lut), _LIMIT, 1, _REACH)
        planes = F.nc_pass(planes, cv2.LUT(sy[a:b], lut), _LIMIT, 0, _REACH)
        # The edge term needs one row either side of the output rows.
        e0, e1 = max(a, r0 - 1), min(b, r1 + 1)
        mag = np.zeros((e1 - e0, w), np.float32)
        chans = []
        for p in planes:
            p8 = p[e0 - a : e1 - a].astype(np.uint8)
            gx, gy = cv2.spatialGradient(p8)
            cv2.add(mag, cv2.magnitude(gx.astype(np.float32), gy.astype(np.float32)), dst=mag)
            chans.append(p8[r0 - e0 : r1 - e0].astype(np.float32))
        # OpenCV's shade is 1 - (summed gradient magnitude of the 0..1 planes), cut at 0.
        shade = np.maximum(np.subtract(1.0, mag * np.float32(1.0 / 255.0)), 0.0)[r0 - e0 : r1 - e0]
        out[r0:r1] = cv2.merge([cv2.convertScaleAbs(cv2.multiply(c, shade)) for c in chans])

    F.parallel(finish, h, _STRIP)
    return out


def _smooth_coarse(
    bgr: np.ndarray, sx: np.ndarray, sy: np.ndarray, f: int, ratio: float, radii: list[float]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The three domain-transform passes on a copy reduced ``f`` times, returned as guided-filter maps."""
    small = F.area_down(bgr, f)
    planes = [p.astype(np.float32) * (1.0 / 255.0) for p in cv2.split(small)]
    # A reduced step spans f full-size steps: its cost is their sum, so fine grain still counts.
    cost_x = (F.area_down(sx, f).astype(np.float32) * ratio + 1.0) * f
    cost_y = (F.area_down(sy, f).astype(np.float32) * ratio + 1.0) * f
    lh, lw = small.shape[:2]
    for r in radii:
        planes = F.nc_pass(planes, cost_x, r, 1, lw)
        planes = F.nc_pass(planes, cost_y, r, 0, lh)
    guide = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
    a, b = F.guided_coefficients(guide, planes, _GUIDE_RADIUS, _GUIDE_EPS)
    return a, [x * 255.0 for x in b]
