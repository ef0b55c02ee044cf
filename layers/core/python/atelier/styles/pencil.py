"""Colour pencil: a fast form of OpenCV's ``pencilSketch`` (domain-transform neighbour counts as shading)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from atelier.styles import _filters as F

VERSION = "1"
DEFAULTS: dict[str, float | int] = {"sigma_s": 60.0, "sigma_r": 0.07, "shade_factor": 0.02}

# Counts are kept in fixed point: the search radius is _R units and a count has 4 fractional bits.
_R = 4096
_FRAC = 16
_PAD = 64
# (previous level, next level) of the dyadic search; a side's count is capped at the last level.
_LEVELS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64))


def effective_params(
    height: int, width: int, sigma_s: float = 60.0, shade_factor: float = 0.02
) -> tuple[float, float]:
    """OpenCV-equivalent ``(sigma_s, shade_factor)`` for an image of this size (see ``_filters.scale``)."""
    s = F.scale(height, width)
    return sigma_s * s, shade_factor / s


def render(
    bgr: np.ndarray, sigma_s: float = 60.0, sigma_r: float = 0.07, shade_factor: float = 0.02
) -> np.ndarray:
    """Colour pencil drawing; ``sigma_s`` is in pixels at the 3072x2048 reference size."""
    h, w = bgr.shape[:2]
    ss, shade = effective_params(h, w, sigma_s, shade_factor)
    # The first pass of OpenCV's 3-pass schedule sets the box radius in domain units.
    radius = math.sqrt(3.0) * ss * math.sqrt(3.0) * 4.0 / math.sqrt(63.0)
    lut = _step_lut(ss / max(sigma_r, 1e-6), radius)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    sx, sy = F.channel_steps(bgr)
    total = np.empty((h, w), np.uint16)
    cx = _side_counts(cv2.LUT(sx, lut), axis=1)
    cy = _side_counts(cv2.LUT(sy, lut), axis=0)
    cv2.add(cx, cy, dst=total)
    # Y = shade * 255 * count, kept above 255 so strong colours still saturate as in YCrCb space.
    luma = cv2.multiply(total, shade * 255.0 / _FRAC, dtype=cv2.CV_16U)
    cv2.min(luma, 1023, dst=luma)
    offset = cv2.subtract(luma, gray, dtype=cv2.CV_16S)
    return F.add_offset(bgr, offset)


def _step_lut(ratio: float, radius: float) -> np.ndarray:
    """Domain step (1 + ratio * summed |diff|) for each summed 8-bit difference, in units of radius/_R."""
    s = np.arange(256, dtype=np.float64)
    steps = (1.0 + ratio * s / 255.0) * (_R / radius)
    return np.minimum(np.rint(steps), 65535).astype(np.uint16)


def _side_counts(q: np.ndarray, axis: int) -> np.ndarray:
    """Both sides' neighbour counts along ``axis`` in 1/_FRAC units, centre included, from step costs ``q``.

    ``q`` holds the cost of the step into each pixel from its predecessor along ``axis`` (the first one along
    the axis is ignored). The count on one side is how many neighbours lie within _R summed cost.
    """
    if axis == 0:
        return np.ascontiguousarray(_side_counts(np.ascontiguousarray(q.T), 1).T)
    rows, n = q.shape
    pad = np.full((rows, n + 2 * _PAD), 65535, np.uint16)
    pad[:, _PAD + 1 : _PAD + n] = q[:, 1:]
    boxes = {1: pad}
    length = 1
    while length < _LEVELS[-1][1] - _LEVELS[-1][0]:
        prev = boxes[length]
        boxes[2 * length] = cv2.add(prev[:, :-length], prev[:, length:])
        length *= 2
    total = np.zeros((rows, n), np.uint16)
    for side in (1, -1):
        budget = np.full((rows, n), _R, np.uint16)
        for lo, hi in _LEVELS:
            span = hi - lo
            start = _PAD + lo + 1 if side == 1 else _PAD - hi + 1
            cost = boxes[span][:, start : start + n]
            frac = cv2.divide(budget, cv2.max(budget, cost), scale=_FRAC * span)
            cv2.add(total, frac, dst=total)
            cv2.subtract(budget, cost, dst=budget)
    return total
