"""Colour pencil: stroke and tone drawing after Lu, Xu and Jia (NPAR 2012), tinted with the photo's chroma."""

from __future__ import annotations

import math

import cv2
import numpy as np

from atelier.styles import _filters as F

VERSION = "2"
DEFAULTS: dict[str, float | int] = {"strength": 0.35}

# The drawing is made on a copy of about this many pixels and enlarged; structure, tone and texture are
# all given relative to the image size, so the look does not depend on resolution.
_WORK_PIXELS = 800_000
_DIRECTIONS = 8
_STRIP = 64
# Hatching texture: seeded noise on a grid of this many cells along the longer side, smeared into strokes.
_TEXTURE_CELLS = 900
# Paper tooth: a finer grain, strong enough to see at 100 % on a 12 MP drawing, averaged away when reduced.
_TOOTH_CELLS = 1600
_TOOTH_UNIT = 192.0


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
    tone = _tone_map(soft, k)
    pencil = _textured(tone)
    cv2.multiply(pencil, strokes, dst=pencil)
    out_small = _colour(pencil, ycc, k)
    return _enlarge(out_small, f, h, w)


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


def _tone_map(soft: np.ndarray, k: float) -> np.ndarray:
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
    lut = np.interp(cdf, target_cdf, v)
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


def _textured(tone: np.ndarray) -> np.ndarray:
    """The tone drawn with the hatching texture H as H**beta (Lu et al.), so that H**beta follows the tone.

    Instead of their smoothness-regularised least squares, beta is ln(tone) over the local mean of ln(H),
    box-smoothed: the same smooth beta map at a small fraction of the cost.
    """
    log_h = np.log(_hatching(*tone.shape))
    mean_log = cv2.blur(log_h, (9, 9))
    np.minimum(mean_log, -1e-3, out=mean_log)
    beta = cv2.divide(np.log(np.maximum(tone, 1e-3)), mean_log)
    beta = cv2.blur(beta, (5, 5))
    return cv2.exp(cv2.multiply(beta, log_h))


def _colour(pencil: np.ndarray, ycc: np.ndarray, k: float) -> np.ndarray:
    """Pencil luma with the photo's chroma, fading to white paper where the pencil is light."""
    y = np.clip(pencil * 255.0 + 0.5, 0, 255)
    # A low power keeps light strokes coloured (a coloured pencil tints even where it barely touches)
    # and still fades to white at bare paper.
    pigment = np.clip(1.0 - pencil, 0.0, 1.0) ** np.float32(0.3) * np.float32(1.5 + 0.3 * k)
    cr = ycc[:, :, 1].astype(np.float32) - 128.0
    cb = ycc[:, :, 2].astype(np.float32) - 128.0
    out = np.empty(ycc.shape, np.uint8)
    out[:, :, 0] = y.astype(np.uint8)
    out[:, :, 1] = np.clip(128.5 + cr * pigment, 0, 255).astype(np.uint8)
    out[:, :, 2] = np.clip(128.5 + cb * pigment, 0, 255).astype(np.uint8)
    return out


def _enlarge(ycc: np.ndarray, f: int, h: int, w: int) -> np.ndarray:
    """The YCrCb drawing enlarged to ``h`` x ``w`` in BGR, with the graphite grain of the paper's tooth."""
    out = np.empty((h, w, 3), np.uint8)
    tooth = _tooth(h, w)

    def strip(r0: int, r1: int) -> None:
        part = ycc[r0:r1] if f == 1 else _up_rows_cubic(ycc, f, r0, r1, w)
        pigment = cv2.bitwise_not(cv2.cvtColor(part, cv2.COLOR_YCrCb2BGR))
        t = tooth[r0:r1]
        cv2.multiply(pigment, cv2.merge((t, t, t)), dst=pigment, scale=1.0 / _TOOTH_UNIT)
        cv2.bitwise_not(pigment, dst=out[r0:r1])

    F.parallel(strip, h, _STRIP)
    return out


def _up_rows_cubic(low: np.ndarray, factor: int, r0: int, r1: int, width: int) -> np.ndarray:
    """Rows ``r0:r1`` of ``low`` enlarged ``factor`` times bicubically: crisper strokes than bilinear."""
    lh = low.shape[0]
    la = max(0, r0 // factor - 2)
    lb = min(lh, (r1 - 1) // factor + 3)
    block = low[la:lb]
    up = cv2.resize(block, (block.shape[1] * factor, (lb - la) * factor), interpolation=cv2.INTER_CUBIC)
    return up[r0 - la * factor : r1 - la * factor, :width]


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
