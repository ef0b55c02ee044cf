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
_STRIP = 64
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
    gain = shade * 255.0 / _FRAC
    counts = np.empty((h, w), np.uint16)
    out = np.empty_like(bgr)

    def along_x(r0: int, r1: int) -> None:
        strip = bgr[r0:r1]
        steps = F.steps_along(strip, axis=1)
        counts[r0:r1] = _side_counts(cv2.LUT(steps, lut), axis=1)

    def along_y(c0: int, c1: int) -> None:
        band = np.ascontiguousarray(bgr[:, c0:c1])
        steps = F.steps_along(band, axis=0)
        total = cv2.add(_side_counts(cv2.LUT(steps, lut), axis=0), counts[:, c0:c1])
        # Y = shade * 255 * count, kept above 255 so strong colours still saturate as in YCrCb space.
        luma = cv2.addWeighted(total, gain, total, 0.0, 0.0, dtype=cv2.CV_16U)
        np.minimum(luma, 1023, out=luma)
        offset = cv2.subtract(luma, cv2.cvtColor(band, cv2.COLOR_BGR2GRAY), dtype=cv2.CV_16S)
        out[:, c0:c1] = F.add_offset(band, offset)

    F.parallel(along_x, h, _STRIP)
    F.parallel(along_y, w, _STRIP)
    return out


def _step_lut(ratio: float, radius: float) -> np.ndarray:
    """Domain step (1 + ratio * summed |diff|) for each summed 8-bit difference, in units of radius/_R."""
    s = np.arange(256, dtype=np.float64)
    steps = (1.0 + ratio * s / 255.0) * (_R / radius)
    return np.minimum(np.rint(steps), 65535).astype(np.uint16)


def _side_counts(q: np.ndarray, axis: int) -> np.ndarray:
    """Neighbour counts along ``axis`` in 1/_FRAC units (both sides, centre included) from step costs ``q``.

    ``q`` holds the cost of the step into each pixel from its predecessor along ``axis`` (the first one along
    the axis is ignored). A side's count is how many neighbours lie within _R summed cost; it is found level
    by level over dyadic spans, interpolating inside the span where the budget runs out. That continuous
    count is about half a pixel above OpenCV's whole one on each side, which pays for the centre pixel.
    """
    n = q.shape[axis]

    def part(a: np.ndarray, start: int, length: int) -> np.ndarray:
        return a[:, start : start + length] if axis == 1 else a[start : start + length]

    shape = list(q.shape)
    shape[axis] = n + 2 * _PAD
    pad = F.scratch("pencil.pad", tuple(shape), np.uint16)
    pad.fill(65535)
    part(pad, _PAD + 1, n - 1)[...] = part(q, 1, n - 1)
    boxes = {1: pad}
    length = 1
    while length < _LEVELS[-1][1] - _LEVELS[-1][0]:
        prev = boxes[length]
        size = prev.shape[axis] - length
        shape[axis] = size
        box = F.scratch(f"pencil.box{2 * length}", tuple(shape), np.uint16)
        cv2.add(part(prev, 0, size), part(prev, length, size), dst=box)
        boxes[2 * length] = box
        length *= 2
    total = np.zeros(q.shape, np.uint16)
    budget = F.scratch("pencil.budget", q.shape, np.uint16)
    frac = F.scratch("pencil.frac", q.shape, np.uint16)
    for side in (1, -1):
        budget.fill(_R)
        for lo, hi in _LEVELS:
            span = hi - lo
            start = _PAD + lo + 1 if side == 1 else _PAD - hi + 1
            cost = part(boxes[span], start, n)
            cv2.max(budget, cost, dst=frac)
            cv2.divide(budget, frac, dst=frac, scale=_FRAC * span)
            cv2.add(total, frac, dst=total)
            cv2.subtract(budget, cost, dst=budget)
    return total
