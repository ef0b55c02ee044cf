"""Colour pencil: stroke and tone drawing after Lu, Xu and Jia (NPAR 2012), tinted with the photo's chroma."""

from __future__ import annotations

import math

import cv2
import numpy as np

from atelier.imaging.styles import _filters as F

VERSION = "2"
DEFAULTS: dict[str, float | int] = {"strength": 0.35}

# The drawing is made on a copy of about this many pixels and enlarged; structure, tone and texture are
# all given relative to the image size, so the look does not depend on resolution.
_WORK_PIXELS = 800_000
_DIRECTIONS = 8
_STRIP = 48
# Hatching texture: seeded noise on a grid of this many cells along the longer side, smeared into strokes.
_TEXTURE_CELLS = 900
# Paper tooth: a finer grain, strong enough to see at 100 % on a 12 MP drawing, averaged away when reduced.
_TOOTH_CELLS = 1600
_TOOTH_UNIT = 192.0
# Fine strokes: this many stroke spacings along the longer side (4 px apart at 4000 px), each this share
# of a spacing wide, at this angle; between strokes the paper keeps this share of the mean darkness.
_STROKES = 1000
_STROKE_WIDTH = 0.55
_ANGLE = -40.0
_GAP = 0.04
# Stroke segments are this many spacings long on average; this share of them is lifted (left blank).
_SEGMENT = 14.0
_LIFTS = 0.2
# The strokes wander across their direction by this many spacings, on a grid of this many cells.
_WARP = 0.6
_WARP_CELLS = 60


def render(bgr: np.ndarray, strength: float = 0.35) -> np.ndarray:
    """Colour pencil drawing of ``bgr``; ``strength`` in 0..1 goes from light sketchy to dense and dark."""
    h, w = bgr.shape[:2]
    k = max(0.0, min(1.0, float(strength)))
    f = F.work_factor(h, w, _WORK_PIXELS)
    small = F.area_down(np.ascontiguousarray(bgr), f) if f > 1 else np.ascontiguousarray(bgr)
    ycc = cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb)
    luma = ycc[:, :, 0].astype(np.float32) * np.float32(1.0 / 255.0)
    size = math.sqrt(luma.shape[0] * luma.shape[1])
    # Grain and JPEG blocks are averaged out by the reduction; this blur removes what is left of them
    # (measured: grain of 4 levels on a 1 MP photo moves mean luma by at most 0.3 levels).
    soft = cv2.GaussianBlur(luma, (0, 0), max(0.5, 0.0015 * size))
    strokes = _stroke_map(soft, size, k)
    sh, sw = soft.shape
    pressure = _pressure(sh, sw)
    hatch = _Hatch(h, w)
    # Lu et al. draw the tone J as H**beta with beta = ln J / mean ln H; here the exponent is J's log
    # times D, the hatching's darkness over its mean, and J is first darkened so that the drawn mean
    # E[J**D] (lighter than J by Jensen's inequality) comes back to J.
    tone = _tone_map(soft, k, hatch.darkness(pressure, 1024))
    field = np.empty((sh, sw, 7), np.float32)
    field[:, :, 0] = np.log(np.maximum(tone, 1e-4))
    field[:, :, 1] = np.log(np.maximum(strokes, 1e-4))
    field[:, :, 2] = pressure
    field[:, :, 3] = _warp(sh, sw)
    cr = ycc[:, :, 1].astype(np.float32) - 128.0
    cb = ycc[:, :, 2].astype(np.float32) - 128.0
    # YCrCb to BGR is linear: each channel is Y plus these chroma offsets (OpenCV's coefficients).
    field[:, :, 4] = cb * np.float32(1.773)
    field[:, :, 5] = cr * np.float32(-0.714) - cb * np.float32(0.344)
    field[:, :, 6] = cr * np.float32(1.403)
    return _draw(field, f, h, w, hatch, k)


def _stroke_map(soft: np.ndarray, size: float, k: float) -> np.ndarray:
    """Lu et al.'s stroke map: gradients sorted by direction, each set drawn with a line of its direction."""
    gx = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    mag: np.ndarray = cv2.magnitude(gx, gy)
    # Gradients in units of luma per image size, so the same edge counts the same at any resolution.
    mag *= np.float32(size)
    # Subtract a floor taken from the image's own gradients, so faint texture and grain stay white.
    floor = float(np.percentile(mag, 60)) if mag.size > 1 else 0.0
    np.subtract(mag, np.float32(floor), out=mag)
    np.maximum(mag, 0.0, out=mag)
    # Edge direction (perpendicular to the gradient) in eighths of a half turn, split between the two
    # nearest directions so that a slowly turning edge does not jump from one line kernel to the next.
    pos: np.ndarray = cv2.phase(gx, gy, angleInDegrees=True)
    pos += np.float32(90.0)
    pos *= np.float32(_DIRECTIONS / 180.0)
    whole = np.floor(pos)
    frac = cv2.subtract(pos, whole)
    bins = (whole.astype(np.int32) % _DIRECTIONS).astype(np.uint8)
    upper = cv2.multiply(mag, frac)
    lower = cv2.subtract(mag, upper)
    length = max(3, round(size / 45.0) | 1)
    drawn: list[np.ndarray] = [soft] * _DIRECTIONS

    def direction(i0: int, i1: int) -> None:
        for i in range(i0, i1):
            c = np.zeros_like(mag)
            cv2.copyTo(lower, (bins == i).view(np.uint8), c)
            cv2.add(c, upper, dst=c, mask=(bins == (i - 1) % _DIRECTIONS).view(np.uint8))
            drawn[i] = _draw_line(c, length, math.pi * i / _DIRECTIONS)

    F.parallel(direction, _DIRECTIONS, 1)
    acc = drawn[0]
    for d in drawn[1:]:
        cv2.add(acc, d, dst=acc)
    top = float(np.percentile(acc, 99.5)) if acc.size > 1 else 0.0
    # An absolute lower bound keeps a nearly flat photo from having its faint edges stretched to black.
    scale = (0.45 + 0.5 * k) / max(top, 4.0)
    s = np.multiply(acc, np.float32(scale))
    np.minimum(s, 1.0, out=s)
    return np.subtract(np.float32(1.0), s, out=s)


def _draw_line(plane: np.ndarray, length: int, theta: float) -> np.ndarray:
    """``plane`` convolved with a line of ``length`` pixels at angle ``theta``.

    A line longer than 11 pixels is a shorter line convolved with two taps at its ends: OpenCV filters
    with kernels of up to 11 x 11 directly over their nonzero taps, larger ones through the DFT, which
    costs about 5 times as much here (measured: 14 ms against 3 ms for a 21-pixel line at 0.8 MP).
    """
    if length <= 11:
        return cv2.filter2D(plane, cv2.CV_32F, _line_kernel(length, theta), borderType=cv2.BORDER_REFLECT)
    short = max(length - 10, (length + 1) // 2) | 1
    reach = (length - short) / 2.0
    line = _draw_line(plane, short, theta)
    taps = np.zeros((11, 11), np.float32)
    for sign in (-1.0, 1.0):
        x, y = 5.0 + sign * reach * math.cos(theta), 5.0 + sign * reach * math.sin(theta)
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            for dx, wx in ((0, 1.0 - fx), (1, fx)):
                if 0 <= y0 + dy < 11 and 0 <= x0 + dx < 11:
                    taps[y0 + dy, x0 + dx] += 0.5 * wy * wx
    return cv2.filter2D(line, cv2.CV_32F, taps, borderType=cv2.BORDER_REFLECT)


def _line_kernel(length: int, theta: float) -> np.ndarray:
    """An anti-aliased line segment through the kernel centre at angle ``theta``, summing to one."""
    canvas = np.zeros((length * 8, length * 8), np.float32)
    c = (length * 8 - 1) / 2.0
    r = (length - 1) / 2.0 * 8
    dx, dy = math.cos(theta) * r, math.sin(theta) * r
    p0 = (round((c - dx) * 16), round((c - dy) * 16))
    p1 = (round((c + dx) * 16), round((c + dy) * 16))
    cv2.line(canvas, p0, p1, (1.0,), 8, cv2.LINE_AA, 4)
    kern = cv2.resize(canvas, (length, length), interpolation=cv2.INTER_AREA)
    return kern / max(float(kern.sum()), 1e-6)


def _tone_map(soft: np.ndarray, k: float, darkness: np.ndarray) -> np.ndarray:
    """Histogram matching of the luma to Lu et al.'s three-layer pencil tone distribution."""
    v = np.arange(256, dtype=np.float64) / 255.0
    bright = np.exp(-(1.0 - v) / (9.0 / 255.0)) / (9.0 / 255.0)
    mid = ((v >= 105 / 255.0) & (v <= 225 / 255.0)).astype(np.float64) / (120.0 / 255.0)
    dark = np.exp(-0.5 * ((v - 90 / 255.0) / (11 / 255.0)) ** 2) / (math.sqrt(2 * math.pi) * 11 / 255.0)
    weights = np.array([82.0, 16.0, 2.0]) * (1 - k) + np.array([52.0, 37.0, 11.0]) * k
    target = weights[0] * bright + weights[1] * mid + weights[2] * dark
    target_cdf = np.cumsum(target)
    target_cdf /= target_cdf[-1]
    q = np.clip(soft * 255.0 + 0.5, 0, 255).astype(np.uint8)
    hist = cv2.calcHist([q], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    # Clipping the histogram bounds the mapping's slope, so a flat sky is not stretched into bands.
    limit = 4.0 * hist.sum() / 256.0
    excess = np.maximum(hist - limit, 0.0).sum()
    hist = np.minimum(hist, limit) + excess / 256.0
    cdf = np.cumsum(hist)
    cdf = (cdf - 0.5 * hist) / cdf[-1]
    lut = _unbias(np.interp(cdf, target_cdf, v), darkness)
    # The 256-entry LUT is applied with interpolation so smooth gradients stay smooth.
    x = np.clip(soft * np.float32(255.0), 0.0, 254.999)
    idx = x.astype(np.int32)
    t = x - idx.astype(np.float32)
    lut32 = lut.astype(np.float32)
    lo = lut32[idx]
    return lo + t * (lut32[idx + 1] - lo)


def _hatching(h: int, w: int) -> np.ndarray:
    """A seeded hatching texture in (0, 1]: dark strokes on light paper, on a grid fixed to the frame."""
    gh, gw = _grid(h, w, _TEXTURE_CELLS)
    rng = np.random.default_rng(20120604)
    tex = np.zeros((gh, gw), np.float32)
    for theta, length, gain in ((-40.0, 41, 1.0), (-52.0, 29, 0.7)):
        noise = rng.standard_normal((gh, gw), dtype=np.float32)
        smear = _draw_line(noise, length, math.radians(theta))
        # Only the upper tail becomes a stroke, so the texture is dark lines on paper, not light streaks.
        cv2.addWeighted(smear, gain / max(float(smear.std()), 1e-6), smear, 0.0, -0.5, dst=smear)
        cv2.add(tex, cv2.threshold(smear, 0.0, 0.0, cv2.THRESH_TOZERO)[1], dst=tex)
    big = cv2.resize(tex, (w, h), interpolation=cv2.INTER_AREA if gw > w else cv2.INTER_LINEAR)
    return np.clip(0.97 - 0.22 * big, 0.35, 1.0)


def _grid(h: int, w: int, cells: int) -> tuple[int, int]:
    """Rows and columns of a texture grid with ``cells`` cells along the longer side of an h x w frame."""
    if w >= h:
        return max(1, round(cells * h / w)), cells
    return cells, max(1, round(cells * w / h))


class _Hatch:
    """Fine pencil strokes evaluated per output pixel: a seeded grating across the stroke direction.

    Each stroke is about half a spacing wide with a one-pixel anti-aliased edge; the spacing is relative
    to the image (``_STROKES`` along the longer side), and where it falls under a few pixels the strokes
    fade to their mean, so a small drawing averages to the same tone as a large one reduced.
    """

    def __init__(self, h: int, w: int) -> None:
        self.spacing = max(h, w) / _STROKES
        self.half = 0.5 * _STROKE_WIDTH * self.spacing
        self.fade = min(1.0, max(0.0, (self.spacing - 1.5) / 1.5))
        t = (np.arange(512, dtype=np.float64) + 0.5) / 512.0
        self.cover = self._cover(t)
        profile = _GAP + (1.0 - _GAP) * self.cover
        mean = float(profile.mean())
        # The darkness over its mean is offset + gain * coverage.
        self.offset = 1.0 - self.fade + self.fade * _GAP / mean
        self.gain = self.fade * (1.0 - _GAP) / mean
        self.tooth = _tooth(h, w)

    def _cover(self, t: np.ndarray) -> np.ndarray:
        """Share of a pixel at phase ``t`` (0..1 across a spacing) covered by the stroke at phase 0.5."""
        return np.clip(self.half + 0.5 - self.spacing * np.abs(t - 0.5), 0.0, 1.0)

    def darkness(self, pressure: np.ndarray, count: int) -> np.ndarray:
        """``count`` seeded samples of the darkness D over the whole drawing (pressure, profile, tooth)."""
        rng = np.random.default_rng(4242)
        d = pressure.ravel()[rng.integers(0, pressure.size, count)].astype(np.float64)
        d *= self.offset + self.gain * self.cover[rng.integers(0, self.cover.size, count)]
        d *= self.tooth.ravel()[rng.integers(0, self.tooth.size, count)] / _TOOTH_UNIT
        return d


def _stroke_texture(rows: int, cols: int) -> np.ndarray:
    """Rows of stroke segments (one row a stroke, one column a spacing along it): seeded lengths and
    pressures with short lifts between them, tapered at their ends; mean one."""
    rng = np.random.default_rng(8128)
    starts = rng.random((rows, cols)) < 1.0 / _SEGMENT
    segment = np.cumsum(starts, axis=1, dtype=np.intp)
    level = rng.uniform(0.45, 1.0, (rows, cols + 1))
    level[rng.random((rows, cols + 1)) < _LIFTS] = 0.0
    tex = np.take_along_axis(level, segment, axis=1).astype(np.float32)
    tex = (tex + np.roll(tex, 1, axis=1) + np.roll(tex, -1, axis=1)) * np.float32(1.0 / 3.0)
    return tex * np.float32(1.0 / float(tex.mean()))


_STROKE_TEXTURE = _stroke_texture(1024, 1024)


def _pressure(h: int, w: int) -> np.ndarray:
    """The coarse hatching's darkness over its mean: the pencil's pressure, streaked along the strokes."""
    log_h = np.log(_hatching(h, w))
    return log_h * np.float32(1.0 / min(float(log_h.mean()), -1e-3))


def _warp(h: int, w: int) -> np.ndarray:
    """A slow seeded offset across the strokes, in stroke spacings, so the strokes wander like drawn ones."""
    gh, gw = _grid(h, w, _WARP_CELLS)
    rng = np.random.default_rng(31337)
    noise = cv2.GaussianBlur(rng.standard_normal((gh + 4, gw + 4), dtype=np.float32), (0, 0), 1.0)
    noise = noise[2:-2, 2:-2] * np.float32(_WARP / max(float(noise[2:-2, 2:-2].std()), 1e-6))
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def _unbias(lut: np.ndarray, darkness: np.ndarray) -> np.ndarray:
    """Tones j whose drawn mean E[j**D] over the darkness samples equals ``lut``."""
    j = np.exp(np.linspace(math.log(1e-3), 0.0, 256))
    drawn = np.exp(np.log(j)[:, None] * darkness[None, :]).mean(axis=1)
    return np.interp(lut, drawn, j)


def _draw(field: np.ndarray, f: int, h: int, w: int, hatch: _Hatch, k: float) -> np.ndarray:
    """Pencil strokes per output pixel from the enlarged fields: tone, stroke map, pressure and colour."""
    out = np.empty((h, w, 3), np.uint8)
    theta = math.radians(_ANGLE)
    across_x = np.arange(w, dtype=np.float32) * np.float32(-math.sin(theta) / hatch.spacing)
    across_y = np.arange(h, dtype=np.float32) * np.float32(math.cos(theta) / hatch.spacing)
    along_x = np.arange(w, dtype=np.float32) * np.float32(math.cos(theta) / hatch.spacing)
    along_y = np.arange(h, dtype=np.float32) * np.float32(math.sin(theta) / hatch.spacing)
    # A low power keeps light strokes coloured (a coloured pencil tints even where it barely touches);
    # above 96 % luma there is no pigment, so the paper between strokes stays white.
    level = np.arange(256, dtype=np.float32) / np.float32(255.0)
    lut = (np.clip((0.96 - level) / 0.96, 0.0, 1.0) ** 0.4 * (2.3 + 0.4 * k)).astype(np.float32)
    tooth = hatch.tooth

    def strip(r0: int, r1: int) -> None:
        part = field[r0:r1] if f == 1 else F.up_rows(field, f, r0, r1, w)
        lnj, lns, pressure, warp, db, dg, dr = cv2.split(part)
        v = np.add(across_x[None, :], across_y[r0:r1, None])
        v += warp
        index = np.floor(v)
        v -= index
        # Each stroke's own pressure along its length, read from the stroke texture at (along, index).
        along = np.add(along_x[None, :], along_y[r0:r1, None])
        own = cv2.remap(_STROKE_TEXTURE, along, index, cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP)
        cv2.addWeighted(own, hatch.fade, own, 0.0, 1.0 - hatch.fade, dst=own)
        pressure *= own
        v -= np.float32(0.5)
        np.abs(v, out=v)
        # Stroke coverage with a one-pixel ramp at its edges, then the darkness D.
        np.multiply(v, np.float32(-hatch.spacing), out=v)
        v += np.float32(hatch.half + 0.5)
        np.clip(v, 0.0, 1.0, out=v)
        v *= np.float32(hatch.gain)
        v += np.float32(hatch.offset)
        v *= pressure
        grain = np.multiply(tooth[r0:r1], np.float32(1.0 / _TOOTH_UNIT), dtype=np.float32)
        v *= grain
        v *= lnj
        lns *= grain
        v += lns
        cv2.exp(v, dst=v)
        y8 = cv2.convertScaleAbs(v, alpha=255.0)
        pigment = cv2.LUT(y8, lut)
        v *= np.float32(255.0)
        planes = []
        for o in (db, dg, dr):
            o *= pigment
            planes.append(cv2.add(v, o, dtype=cv2.CV_8U))
        cv2.merge(planes, dst=out[r0:r1])

    F.parallel(strip, h, _STRIP)
    return out


def _tooth(h: int, w: int) -> np.ndarray:
    """Pigment multiplier in units of _TOOTH_UNIT: graphite grain along the hatching on the paper's tooth."""
    gh, gw = _grid(h, w, _TOOTH_CELLS)
    rng = np.random.default_rng(1999)
    kern = _line_kernel(7, math.radians(-40.0))
    grain = cv2.filter2D(rng.standard_normal((gh, gw), dtype=np.float32), cv2.CV_32F, kern)
    # Scaled to unit spread by the kernel's norm.
    gain = 0.3 * _TOOTH_UNIT / float(np.sqrt((kern * kern).sum()))
    take = cv2.addWeighted(grain, gain, grain, 0.0, _TOOTH_UNIT)
    np.clip(take, 0.0, 255.0, out=take)
    small = take.astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_AREA if gw > w else cv2.INTER_LINEAR)
