"""Watercolour: transparent layered washes with pooled rims, blooms, granulation and paper tooth.

The washes follow Bousseau et al. 2006 ("Interactive watercolor rendering with temporal coherence and
abstraction"): the photo is abstracted into soft colour regions by an edge-preserving filter (Gastal and
Oliveira's domain transform) and a soft quantisation of luminance (Winnemoeller et al. 2006), thinned
towards the paper where it is light (transparent pigment, highlights left as bare paper), blurred across
weak edges only (wet-in-wet), and then every effect is a change of pigment density ``d`` applied with
Bousseau's colour model ``c' = c - (c - c^2)(d - 1)``: edge darkening on the inside of each wash where
pigment pools (Curtis et al. 1997), backruns (blooms with a dark cauliflower rim), low-frequency
turbulence with a slight hue drift between the channels, and paper-grain granulation. The washes are
brought to full resolution by joint upsampling with the full-resolution luminance as guide (He and Sun's
fast guided filter), so shapes keep the photo's borders at 100 %, and the finest paper tooth is drawn
per full-resolution pixel.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from atelier.imaging.styles import _filters as F

VERSION = "2"
DEFAULTS: dict[str, float | int] = {"strength": 0.6}

# The abstraction runs on a copy of about this many pixels; full resolution gets the washes through a
# guided upsampling plus the photo's strong fine detail.
_WORK_PIXELS = 320_000
_SIGMA_S = 45.0  # domain-transform reach, in pixels at the 3072x2048 reference
_SIGMA_R = 0.3
_STRIP = 64
_FLOOR = 0.1
_CORE = 12.0  # grey levels of full-res detail dropped as grain (sensor noise is ~2.5 levels)
_EPS = 30.0  # guided-upsampling regulariser, grey levels squared: edges of ~5 levels and more guide
# Noise grids, in cells across the long side.
_TURBULENCE = ((4, 0.5), (11, 0.32), (27, 0.18))
_BLOOM = ((6, 0.6), (15, 0.28), (48, 0.12))
_HUE = ((5, 0.7), (14, 0.3))
_PAPER = ((420, 0.4), (150, 0.6))
_TOOTH = 1400  # finest paper octave, per full-res pixel; fades in from 1.5 to 3 pixels per cell


def effective_sigma_s(height: int, width: int, sigma_s: float = _SIGMA_S) -> float:
    """The domain-transform ``sigma_s`` in pixels for an image of this size (see ``_filters.scale``)."""
    return sigma_s * F.scale(height, width)


@functools.cache
def _grid(cells: int, seed: int) -> np.ndarray:
    """A fixed square of seeded white noise (zero mean, unit spread), with a margin of one cell each side."""
    g = np.random.default_rng(seed).random((cells + 3, cells + 3), dtype=np.float32)
    return (g - np.float32(0.5)) * np.float32(math.sqrt(12.0))


def _warp(cells: int, seed: int, h: int, w: int, long: int, flags: int) -> np.ndarray:
    """The grid stretched over ``h`` x ``w`` pixels so that ``cells`` span ``long`` pixels."""
    s = cells / long
    m = np.array([[s, 0, 0.5 * s + 0.5], [0, s, 0.5 * s + 0.5]], np.float32)
    return cv2.warpAffine(
        _grid(cells, seed), m, (w, h), flags=flags | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )


@functools.lru_cache(maxsize=8)
def _noise(octaves: tuple[tuple[int, float], ...], seed: int, h: int, w: int) -> np.ndarray:
    """Smooth noise at relative positions: the same pattern over the picture at any resolution.

    Coarse octaves are drawn on a small canvas and enlarged, which costs a fraction of drawing them at
    the working size and changes nothing visible.
    """
    long = max(h, w)
    side = min(long, 8 * max(c for c, _ in octaves))
    ch, cw = max(1, round(h * side / long)), max(1, round(w * side / long))
    out = np.zeros((ch, cw), np.float32)
    for i, (cells, weight) in enumerate(octaves):
        g = _warp(cells, seed + i, ch, cw, side, cv2.INTER_CUBIC)
        cv2.scaleAdd(g, weight, out, dst=out)
    if (ch, cw) != (h, w):
        out = np.asarray(cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    out.setflags(write=False)  # cached and shared between renders of one size
    return out


def _nc_halves(planes: list[np.ndarray], cost: np.ndarray, limit: float, axis: int) -> list[np.ndarray]:
    """``_filters.nc_pass`` over the whole axis, its two independent halves (rows or columns) side by side."""
    n = planes[0].shape[1 - axis]
    reach = planes[0].shape[axis]
    if F.workers() == 1 or n < 32:
        return F.nc_pass(planes, cost, limit, axis, reach)
    out = [np.empty_like(p) for p in planes]
    mid = n // 2

    def half(i: int, _: int) -> None:
        part = slice(0, mid) if i == 0 else slice(mid, n)
        idx = (part, slice(None)) if axis == 1 else (slice(None), part)
        res = F.nc_pass([p[idx] for p in planes], cost[idx], limit, axis, reach)
        for o, r in zip(out, res, strict=True):
            o[idx] = r

    F.parallel(half, 2, 1)
    return out


@functools.cache
def _tooth_grid(amp: float) -> np.ndarray:
    """The finest paper octave's grid as 8-bit grey levels around 128, ``amp`` levels per unit spread."""
    spread = round(amp * math.sqrt(3.0))  # uniform noise of unit spread spans +-sqrt(3)
    n = _TOOTH + 3
    raw = np.frombuffer(np.random.default_rng(31).bytes(n * n), np.uint8).reshape(n, n)
    lut = (128 - spread + (np.arange(256) * (2 * spread + 1)) // 256).astype(np.uint8)
    return cv2.LUT(raw, lut)


def _tooth(h: int, w: int) -> np.ndarray | None:
    """The finest paper octave per full-resolution pixel, 8-bit around 128; None where it would alias.

    It fades in from 1.5 to 3 pixels per noise cell, so a small picture does not get a grain that a
    large one loses when reduced. Kept in 8 bits, the full-size plane costs a quarter of the memory
    traffic of a float one.
    """
    long = max(h, w)
    amp = 8.0 * min(1.0, max(0.0, (long / _TOOTH - 1.5) / 1.5))
    if amp < 0.5:
        return None
    s = _TOOTH / long
    # A plain resize of the grid's corner is an eighth of the cost of an affine warp.
    size = (max(2, round(w * s)), max(2, round(h * s)))
    g = _tooth_grid(round(amp * 2.0) / 2.0)[: size[1], : size[0]]
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)


def _wide_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur done on a copy reduced two or four times, then enlarged back."""
    h, w = x.shape[:2]
    k = 4 if sigma >= 5.0 else 2
    if sigma < 2.5 or min(h, w) < 4 * k:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    small = cv2.resize(x, (w // k, h // k), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / k)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _quantile(x: np.ndarray, q: float) -> float:
    """The ``q`` quantile of a plane, from at most about 100k evenly spread samples."""
    if not x.size:
        return 1.0
    step = max(1, round(math.sqrt(x.size / 100_000)))
    v = x[::step, ::step].ravel()
    k = min(v.size - 1, round(q * (v.size - 1)))
    return float(np.partition(v, k)[k])


def render(bgr: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Watercolour; ``strength`` 0..1 goes from light, clean washes to bold washes with blooms and rims."""
    h, w = bgr.shape[:2]
    s = float(min(1.0, max(0.0, strength)))
    if not bgr.flags.c_contiguous:
        bgr = np.ascontiguousarray(bgr)
    f = F.work_factor(h, w, _WORK_PIXELS)
    small = F.area_down(bgr, f)
    gain, base, paint = _washes(small, effective_sigma_s(h, w) / f, s)
    out = np.empty((h, w, 3), np.uint8)
    if f == 1:
        cv2.merge([cv2.convertScaleAbs(p, alpha=255.0) for p in paint], dst=out)
        return out
    # Joint upsampling (He and Sun's fast guided filter): the plain washes become ``a * luma + b`` per
    # channel, so a border takes the photo's full-res shape instead of the working grid's; the pigment
    # texture (blooms, turbulence, granulation) is the difference to the plain washes, enlarged as is.
    guide = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gains, planes = F.guided_coefficients(guide, [b * np.float32(255.0) for b in base], 1, _EPS, a_limit=1.5)
    for plane, b, p in zip(planes, base, paint, strict=True):
        cv2.scaleAdd(cv2.subtract(p, b), 255.0, plane, dst=plane)  # the painted texture rides on b
    detail_gain = gain * (0.72 - 0.12 * s)
    sigma = 0.5 * f
    # A kernel cut at 2 sigma: half the cost of OpenCV's default size, and the band looks the same.
    halo = math.ceil(2 * sigma)
    ksize = (2 * halo + 1, 2 * halo + 1)
    tooth = _tooth(h, w)
    if tooth is not None:
        for p in planes:
            p -= np.float32(128.0)  # the tooth's 8-bit zero, taken off once at the working size

    def finish(r0: int, r1: int) -> None:
        a, b = max(0, r0 - halo), min(h, r1 + halo)
        grey = cv2.cvtColor(bgr[a:b], cv2.COLOR_BGR2GRAY).astype(np.float32)
        # The detail band is what a smooth low-pass at the working scale leaves; the residual of the
        # block means itself would print the block grid as a dot pattern along every edge.
        low = cv2.GaussianBlur(grey, ksize, sigma, borderType=cv2.BORDER_REFLECT)
        grey = grey[r0 - a : r1 - a]
        hp = cv2.subtract(grey, low[r0 - a : r1 - a])
        # Soft coring: grain and JPEG ripples stay out, strong fine structure (hair, lattices) comes back.
        core = np.clip(hp, -_CORE, _CORE)
        lum = cv2.addWeighted(hp, detail_gain, core, -detail_gain, 0.0)
        if tooth is not None:
            cv2.add(lum, tooth[r0:r1], dst=lum, dtype=cv2.CV_32F)
        chans = []
        for g, p in zip(gains, planes, strict=True):
            q = F.up_rows(p, f, r0, r1, w)
            cv2.add(q, lum, dst=q)
            cv2.accumulateProduct(grey, F.up_rows(g, f, r0, r1, w), q)
            chans.append(cv2.convertScaleAbs(q))
        out[r0:r1] = cv2.merge(chans)

    F.parallel(finish, h, _STRIP)
    return out


def _washes(small: np.ndarray, sigma_s: float, s: float) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """The tone gain, the plain washes and the painted picture at the working size: B, G, R planes in 0..1."""
    lh, lw = small.shape[:2]
    img = small.astype(np.float32) * np.float32(1.0 / 255.0)
    lum = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)

    # Tone: bring the photo's own white point up to near paper (night photos up to 4x), then lighten in
    # density space, since a watercolour is never darker than its subject and has no solid black.
    hi = _quantile(lum, 0.99)
    gain = min(4.0, max(1.0, 0.95 / max(hi, 1e-3)))
    img *= np.float32(gain)
    np.minimum(img, 1.0, out=img)
    img = 1.0 - cv2.pow(1.0 - img, 1.1 + 0.2 * s)

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
    for k in range(3):
        r = 3.0 * sigma_s * 2.0 ** (2 - k) / math.sqrt(63.0)
        planes = _nc_halves(planes, cost_x, r, 1)
        planes = _nc_halves(planes, cost_y, r, 0)
    noise = {
        "turb": _noise(_TURBULENCE, 11, lh, lw),
        "bloom": _noise(_BLOOM, 41, lh, lw),
        "paper": _noise(_PAPER, 23, lh, lw),
        "hue": _noise(_HUE, 53, lh, lw),
    }
    wash = cv2.merge(planes)

    # Soft quantisation of luminance into layered washes (Winnemoeller et al. 2006).
    lw_ = cv2.cvtColor(wash, cv2.COLOR_BGR2GRAY)
    levels = 6.0
    q = np.round(lw_ * levels) / levels
    soft = q + np.tanh((lw_ - q) * np.float32(levels * 3.0)) * np.float32(0.5 / levels)
    shift = (soft - lw_) * np.float32(0.4 + 0.4 * s)
    wash = wash + shift[:, :, None]

    # Wet-in-wet: colours bleed across weak edges, strong ones stay hard; how far varies over the sheet.
    unit = math.sqrt(lh * lw) / 600.0  # one pixel of a ~0.36 MP picture
    gx = cv2.Sobel(lw_, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lw_, cv2.CV_32F, 0, 1, ksize=3)
    edge = cv2.magnitude(gx, gy)
    ref = _quantile(edge, 0.9) + 1e-3
    hard = np.clip(edge * np.float32(1.0 / ref), 0.0, 1.0)
    hard = cv2.GaussianBlur(hard, (0, 0), 1.5 * unit)
    # Broad, quiet regions: where blooms form and granulation settles.
    flat = np.float32(1.0) - np.clip(_wide_blur(hard, 8.0 * unit) * np.float32(2.5), 0.0, 1.0)
    turb = noise["turb"]
    hard = np.clip(hard * (np.float32(1.0) + np.float32(0.5) * turb), 0.0, 1.0)[:, :, None]
    bled = _wide_blur(wash, 3.0 * unit)
    wash = bled + (wash - bled) * hard
    np.clip(wash, 0.0, 1.0, out=wash)

    # Transparent pigment: light, even washes are thinned towards the paper, highlights are bare paper.
    wl = cv2.cvtColor(wash, cv2.COLOR_BGR2GRAY)
    thin = np.clip((wl - np.float32(0.76)) * np.float32(1.0 / 0.2), 0.0, 1.0)
    conc = np.float32(0.95) - np.float32(0.95) * thin * thin * (np.float32(0.45) + np.float32(0.55) * flat)
    wash = np.float32(1.0) - (np.float32(1.0) - wash) * conc[:, :, None]

    # Pigment density: pooling on the inside of each wash border, blooms, turbulence and granulation.
    soft_l = cv2.GaussianBlur(cv2.cvtColor(wash, cv2.COLOR_BGR2GRAY), (0, 0), 0.7 * unit)
    near = cv2.GaussianBlur(soft_l, (0, 0), 2.2 * unit)
    pool = np.maximum(near - soft_l, 0.0) * np.float32(1.0 / 0.04)
    # In foliage and fur every pixel is a border, and a rim on each one reads as scribble.
    busy = _wide_blur(pool, 6.0 * unit)
    pool = np.maximum(pool - busy * np.float32(1.3), 0.0)
    pool = pool / (pool + np.float32(1.0))
    rim = pool * np.float32(0.8 + 0.9 * s)
    density = rim.copy()
    # Backruns: water creeping back into a drying wash pushes pigment out to a dark, frilly front.
    bloom = noise["bloom"]
    front = bloom - np.float32(0.6)
    ring = np.exp(-(front * front) * np.float32(1.0 / 0.006))
    inside = np.clip(front * np.float32(6.0), 0.0, 1.0)
    wet = flat * np.float32(0.35 + 0.65 * s)
    cv2.scaleAdd(ring * wet, 0.45, density, dst=density)
    cv2.scaleAdd(inside * wet, -0.3, density, dst=density)
    cv2.scaleAdd(turb, 0.14 + 0.16 * s, density, dst=density)
    paper = noise["paper"]
    gran = paper * (np.float32(0.06 + 0.06 * s) + np.float32(0.08 + 0.08 * s) * flat)
    cv2.add(density, gran, dst=density)
    # Pigment turbulence drifts the hue a little: the channels get slightly different densities.
    # Grey subjects keep most of their neutrality: the drift grows with the wash's own saturation.
    chans = list(cv2.split(wash))
    sat = cv2.subtract(
        cv2.max(cv2.max(chans[0], chans[1]), chans[2]), cv2.min(cv2.min(chans[0], chans[1]), chans[2])
    )
    hue = noise["hue"] * (np.float32(0.02 + 0.02 * s) + sat * np.float32(0.25 + 0.2 * s))
    # Bousseau's model c' = c - (c - c^2)(d - 1): the plain washes get only the pooled rims, which follow
    # the borders and so go through the guided upsampling; the painted ones get every density effect.
    base, paint = [], []
    for c, d in zip(chans, (density + hue, density, density - hue), strict=True):
        t = c - c * c
        b = c - t * rim
        o = c - t * d
        for x in (b, o):
            np.maximum(x, 0.0, out=x)  # pigment over paper never reaches solid black
            x *= np.float32(1.0 - _FLOOR)
            x += np.float32(_FLOOR)
        base.append(b)
        paint.append(o)
    return gain, base, paint
