"""Watercolour: soft washes with pooled pigment at their borders, turbulence and paper grain.

The washes follow Bousseau et al. 2006 ("Interactive watercolor rendering with temporal coherence and
abstraction"): the photo is abstracted into soft colour regions by an edge-preserving filter (Gastal and
Oliveira's domain transform) and a soft quantisation of luminance (Winnemoeller et al. 2006), blurred
across weak edges only (wet-in-wet), and then every effect is a change of pigment density ``d`` applied
with Bousseau's colour model ``c' = c - (c - c^2)(d - 1)``: edge darkening where pigment pools at the
borders of a wash (Curtis et al. 1997), low-frequency turbulence and paper-grain granulation. White
paper stays white because the model cannot darken ``c = 1``.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from atelier.styles import _filters as F

VERSION = "2"
DEFAULTS: dict[str, float | int] = {"strength": 0.6}

# The abstraction runs on a copy of about this many pixels; full resolution only gets the washes
# enlarged plus the photo's strong fine detail.
_WORK_PIXELS = 320_000
_SIGMA_S = 45.0  # domain-transform reach, in pixels at the 3072x2048 reference
_SIGMA_R = 0.3
_STRIP = 64
_FLOOR = 0.1
_CORE = 12.0  # grey levels of full-res detail dropped as grain (sensor noise is ~2.5 levels)
# Noise grids, in cells across the long side: turbulence octaves and paper grain.
_TURBULENCE = ((5, 0.55), (13, 0.3), (31, 0.15))
_PAPER = ((420, 0.6), (150, 0.4))


def effective_sigma_s(height: int, width: int, sigma_s: float = _SIGMA_S) -> float:
    """The domain-transform ``sigma_s`` in pixels for an image of this size (see ``_filters.scale``)."""
    return sigma_s * F.scale(height, width)


@functools.cache
def _grid(cells: int, seed: int) -> np.ndarray:
    """A fixed square of seeded white noise, with a margin of one cell each side."""
    return np.random.default_rng(seed).standard_normal((cells + 3, cells + 3)).astype(np.float32)


def _noise(octaves: tuple[tuple[int, float], ...], seed: int, h: int, w: int) -> np.ndarray:
    """Smooth noise at relative positions: the same pattern over the picture at any resolution."""
    out = np.zeros((h, w), np.float32)
    long = max(h, w)
    for i, (cells, weight) in enumerate(octaves):
        s = cells / long
        m = np.array([[s, 0, 0.5 * s + 0.5], [0, s, 0.5 * s + 0.5]], np.float32)
        g = cv2.warpAffine(
            _grid(cells, seed + i),
            m,
            (w, h),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        cv2.scaleAdd(g, weight, out, dst=out)
    return out


def render(bgr: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Watercolour; ``strength`` 0..1 goes from light washes over the photo to bold, pooled washes."""
    h, w = bgr.shape[:2]
    s = float(min(1.0, max(0.0, strength)))
    if not bgr.flags.c_contiguous:
        bgr = np.ascontiguousarray(bgr)
    f = F.work_factor(h, w, _WORK_PIXELS)
    small = F.area_down(bgr, f)
    gain, wash = _washes(small, effective_sigma_s(h, w) / f, s)
    planes = [np.ascontiguousarray(p) for p in cv2.split(wash * np.float32(255.0))]
    detail_gain = gain * (0.72 - 0.12 * s)
    out = np.empty((h, w, 3), np.uint8)
    sigma = 0.5 * f
    halo = math.ceil(3 * sigma) + 1

    def finish(r0: int, r1: int) -> None:
        if f == 1:
            out[r0:r1] = cv2.merge([cv2.convertScaleAbs(p[r0:r1]) for p in planes])
            return
        a, b = max(0, r0 - halo), min(h, r1 + halo)
        grey = cv2.cvtColor(bgr[a:b], cv2.COLOR_BGR2GRAY).astype(np.float32)
        # The detail band is what a smooth low-pass at the working scale leaves; the residual of the
        # block means itself would print the block grid as a dot pattern along every edge.
        low = cv2.GaussianBlur(grey, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        lum = cv2.subtract(grey[r0 - a : r1 - a], low[r0 - a : r1 - a])
        # Soft coring: grain and JPEG ripples stay out, strong fine structure (hair, lattices) comes back.
        core = np.clip(lum, -_CORE, _CORE)
        cv2.subtract(lum, core, dst=lum)
        lum = lum * np.float32(detail_gain)
        chans = []
        for p in planes:
            q = F.up_rows(p, f, r0, r1, w)
            cv2.add(q, lum, dst=q)
            chans.append(cv2.convertScaleAbs(q))
        out[r0:r1] = cv2.merge(chans)

    F.parallel(finish, h, _STRIP)
    return out


def _washes(small: np.ndarray, sigma_s: float, s: float) -> tuple[float, np.ndarray]:
    """The painted picture at the working size, float BGR in 0..1, and the tone gain it applied."""
    lh, lw = small.shape[:2]
    img = small.astype(np.float32) * np.float32(1.0 / 255.0)
    lum = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)

    # Tone: bring the photo's own white point up to near paper (night photos up to 4x), then lighten in
    # density space, since a watercolour is never darker than its subject and has no solid black.
    hi = float(np.percentile(lum, 99.0)) if lum.size else 1.0
    gain = min(4.0, max(1.0, 0.93 / max(hi, 1e-3)))
    gamma = 1.2 + 0.2 * s
    img *= np.float32(gain)
    np.minimum(img, 1.0, out=img)
    img = 1.0 - cv2.pow(1.0 - img, gamma)

    # Abstraction: three domain-transform passes whose step costs come from a pre-smoothed copy, so
    # that grain does not cut the washes into pieces.
    guide = cv2.GaussianBlur(img, (0, 0), 1.0)
    ratio = sigma_s / _SIGMA_R
    cost_x = np.ones((lh, lw), np.float32)
    cost_y = np.ones((lh, lw), np.float32)
    if lw > 1:
        cost_x[:, 1:] += np.abs(np.diff(guide, axis=1)).sum(axis=2) * np.float32(ratio)
    if lh > 1:
        cost_y[1:] += np.abs(np.diff(guide, axis=0)).sum(axis=2) * np.float32(ratio)
    planes = list(cv2.split(img))
    for i in range(3):
        r = 3.0 * sigma_s * 2.0 ** (2 - i) / math.sqrt(63.0)
        planes = F.nc_pass(planes, cost_x, r, 1, lw)
        planes = F.nc_pass(planes, cost_y, r, 0, lh)
    wash = cv2.merge(planes)

    # Soft quantisation of luminance into layered washes (Winnemoeller et al. 2006).
    lw_ = cv2.cvtColor(wash, cv2.COLOR_BGR2GRAY)
    levels = 7.0
    q = np.round(lw_ * levels) / levels
    soft = q + np.tanh((lw_ - q) * np.float32(levels * 3.0)) * np.float32(0.5 / levels)
    shift = (soft - lw_) * np.float32(0.35 + 0.45 * s)
    wash = wash + shift[:, :, None]

    # Wet-in-wet: colours bleed across weak edges, strong ones stay hard.
    unit = math.sqrt(lh * lw) / 600.0  # one pixel of a ~0.36 MP picture
    gx = cv2.Sobel(lw_, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lw_, cv2.CV_32F, 0, 1, ksize=3)
    edge = cv2.magnitude(gx, gy)
    ref = float(np.percentile(edge, 90)) + 1e-3 if edge.size else 1.0
    hard = np.clip(edge * np.float32(1.0 / ref), 0.0, 1.0)
    hard = cv2.GaussianBlur(hard, (0, 0), 1.5 * unit)[:, :, None]
    bled = cv2.GaussianBlur(wash, (0, 0), 2.5 * unit)
    wash = bled + (wash - bled) * hard
    np.clip(wash, 0.0, 1.0, out=wash)

    # Pigment density: pooling at the borders of each wash, turbulence and paper granulation.
    soft_l = cv2.GaussianBlur(cv2.cvtColor(wash, cv2.COLOR_BGR2GRAY), (0, 0), 0.8 * unit)
    ex = cv2.Sobel(soft_l, cv2.CV_32F, 1, 0, ksize=3)
    ey = cv2.Sobel(soft_l, cv2.CV_32F, 0, 1, ksize=3)
    rim = cv2.magnitude(ex, ey) * np.float32(unit)
    # Only borders that stand out from their surroundings pool pigment; in foliage and fur every pixel
    # is a border, and a rim on each one reads as scribble.
    busy = cv2.GaussianBlur(rim, (0, 0), 5.0 * unit)
    rim = np.maximum(rim - busy * np.float32(1.2), 0.0)
    rim = cv2.GaussianBlur(rim / (rim + np.float32(0.04)), (0, 0), 1.2 * unit)
    density = rim * np.float32(0.6 + 0.6 * s)
    turb = _noise(_TURBULENCE, 11, lh, lw)
    paper = _noise(_PAPER, 23, lh, lw)
    cv2.scaleAdd(turb, 0.12 + 0.16 * s, density, dst=density)
    cv2.scaleAdd(paper, 0.06 + 0.1 * s, density, dst=density)
    d = density[:, :, None]
    wash = wash - (wash - wash * wash) * d
    # Paper tooth shows faintly even where there is no pigment.
    wash *= (np.float32(1.0) - np.float32(0.012) * np.clip(paper, 0.0, None))[:, :, None]
    # Pigment over paper never reaches solid black.
    np.clip(wash, 0.0, 1.0, out=wash)
    wash = np.float32(_FLOOR) + np.float32(1.0 - _FLOOR) * wash
    return gain, wash
