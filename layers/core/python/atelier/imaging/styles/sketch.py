"""Graphite drawing: flow-based DoG lines, patch-wise directional hatching and paper grain."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from atelier.imaging.styles import _filters as F

VERSION = "2"
DEFAULTS: dict[str, float | int] = {"strength": 0.5}

# Tone, flow and hatch layout run on a copy of at most this many pixels.
_WORK_PIXELS = 500_000
# Contour lines are placed on a sharper copy of at most this many pixels, then gated by the flow lines.
_LINE_PIXELS = 2_000_000
# Hatch orientations (degrees, counter-clockwise from the x axis), clear of 0 and 90 so that hatching never
# reads as a grid; a patch picks one and crosses it with the next, 60 degrees on.
_ANGLES = (15.0, 75.0, 135.0)
_BASE = 135.0  # patches hatch around this one of them, so that neighbouring patches mostly agree
# Patches of one hatch direction: cells of this many along the longer side, jittered by up to this.
_CELLS = 9
_JITTER = 28.0
# Hatch pitch in pixels at 0.5 MP; larger images grow it like size ** 0.4, not linearly (a pencil's
# stroke stays a few pixels wide however large the sheet is scanned).
_PITCH = 5.0
_TOOTH = 1600  # paper tooth cells along the longer side
_TEX = 1024
_TILE = 256  # per-pixel graphite grain tile
_STRIP = 64
_PAPER = 246.0
_CORE = 0.4  # share of the ridge's height above which a full-size pixel is on the line
_RAMP = 3.0  # steepness of that threshold
_CLOSE = 7  # closing disc (line-copy pixels) that bridges gaps along a ridge
_SPAN = 1.5  # thresholds in darkness units 0.._SPAN are stored as 0..255


def _tone_lut(hist: np.ndarray) -> np.ndarray:
    """Luma -> lightness 0..1 from the photo's histogram: percentile stretch blended with a clipped CDF."""
    total = float(hist.sum())
    cdf = np.cumsum(hist) / total
    lo = float(np.searchsorted(cdf, 0.02))
    hi = float(np.searchsorted(cdf, 0.98))
    if hi - lo < 48.0:  # a nearly flat photo: do not stretch its noise into strokes
        mid = 0.5 * (hi + lo)
        lo, hi = mid - 24.0, mid + 24.0
    v = np.arange(256, dtype=np.float64)
    stretch = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    # Global clip-limited equalisation: the slope never exceeds ~3x, so a sky's narrow peak stays calm.
    p = hist / total
    limit = 3.0 / 256.0
    excess = np.maximum(p - limit, 0.0).sum()
    p = np.minimum(p, limit) + excess / 256.0
    eq = np.cumsum(p) - 0.5 * p
    eq = (eq - eq[0]) / max(eq[-1] - eq[0], 1e-9)
    return (0.65 * stretch + 0.35 * eq).astype(np.float32)


def _to_u8(x: np.ndarray) -> np.ndarray:
    """``x`` stretched from its own minimum and maximum to 0..255."""
    lo, hi = float(x.min()), float(x.max())
    return np.rint((x - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _tooth(th: int, tw: int, gh: int, gw: int) -> np.ndarray:
    """Paper tooth (0..255), th x tw, drawn on a grid of gh x gw cells: the same at every resolution."""
    rng = np.random.default_rng(20071)
    tooth: np.ndarray = rng.random((max(1, gh), max(1, gw)), dtype=np.float32)
    tooth = cv2.GaussianBlur(tooth, (0, 0), 0.7)
    tooth = cv2.resize(tooth, (tw, th), interpolation=cv2.INTER_AREA if tw < gw else cv2.INTER_LINEAR)
    return _to_u8(tooth)


@functools.lru_cache(maxsize=1)
def _grain() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graphite grain tiles streaked along each hatch angle, a table of dash pressures and row offsets."""
    rng = np.random.default_rng(7331)
    noise = rng.random((_TILE, _TILE), dtype=np.float32)
    tiles = []
    for a in _ANGLES:
        k = np.zeros((9, 9), np.float32)
        c, s = math.cos(math.radians(a)), -math.sin(math.radians(a))
        for i in range(-4, 5):
            k[round(4 + i * s), round(4 + i * c)] = 1.0
        k /= k.sum()
        t = cv2.filter2D(cv2.copyMakeBorder(noise, 4, 4, 4, 4, cv2.BORDER_WRAP), -1, k)[4:-4, 4:-4]
        t = (t - t.mean()) / max(float(t.std()), 1e-6)
        tiles.append(np.clip(1.0 + 0.3 * t, 0.4, 1.3).astype(np.float32))
    return np.stack(tiles), rng.random(4096, dtype=np.float32), rng.random(1024, dtype=np.float32)


def _flow_smooth(e: np.ndarray, tx: np.ndarray, ty: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``e`` along the local edge tangent (straight-line line-integral convolution)."""
    h, w = e.shape
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    # Samples 1.5 px apart: bilinear taps cover the gaps, and 8 taps instead of 12 at 0.5 MP save 16 ms.
    step = 1.5 if sigma > 2.0 else 1.0
    reach = max(1, math.ceil(2.0 * sigma / step))
    acc = e.copy()
    total = 1.0
    mx = np.empty((h, w), np.float32)
    my = np.empty((h, w), np.float32)
    for j in range(1, reach + 1):
        k = j * step
        wk = math.exp(-0.5 * (k / sigma) ** 2)
        for s in (k, -k):
            np.multiply(tx, np.float32(s), out=mx)
            mx += xs
            np.multiply(ty, np.float32(s), out=my)
            my += ys
            acc += wk * cv2.remap(e, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        total += 2.0 * wk
    acc *= np.float32(1.0 / total)
    return acc


def _orientation(gx: np.ndarray, gy: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cos and sin of twice the gradient angle, and the tensor's energy, from a structure tensor."""
    exx = cv2.GaussianBlur(gx * gx, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    eyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    exy = cv2.GaussianBlur(gx * gy, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    a = exx - eyy
    b = 2.0 * exy
    mag = np.sqrt(a * a + b * b) + np.float32(1e-12)
    return a / mag, b / mag, mag


def _hatch_layout(light: np.ndarray, dark: np.ndarray, strength: float) -> list[np.ndarray]:
    """Per hatch angle, how far its strokes reach (0..255): patches follow the coarse form or a jitter."""
    h, w = light.shape
    # Coarse orientation on a reduced copy: the form's direction, not its texture.
    f = max(1, round(math.sqrt(h * w) / 150.0))
    sm = cv2.resize(light, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    sh, sw = sm.shape
    gx = cv2.Sobel(sm, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(sm, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    c2, s2, mag = _orientation(gx, gy, max(1.0, math.sqrt(sh * sw) / 60.0))
    # Strokes run along the isophotes: the gradient turned a quarter; y points down, angles go up.
    tc, ts = -c2, s2
    ref = max(float(np.percentile(mag, 75.0)), 1e-3)
    trust = np.clip(mag / np.float32(ref) - 0.3, 0.0, 1.0) * np.float32(0.8)
    # Per cell, a seeded angle around the base hatch direction.
    if w >= h:
        cy, cx = max(1, round(_CELLS * h / w)), _CELLS
    else:
        cy, cx = _CELLS, max(1, round(_CELLS * w / h))
    rng = np.random.default_rng(4242)
    ang = np.radians(_BASE + _JITTER * (2.0 * rng.random((cy, cx), dtype=np.float32) - 1.0))
    cell_c = cv2.resize(np.cos(2 * ang).astype(np.float32), (sw, sh), interpolation=cv2.INTER_NEAREST)
    cell_s = cv2.resize(np.sin(2 * ang).astype(np.float32), (sw, sh), interpolation=cv2.INTER_NEAREST)
    vc = trust * tc + (1.0 - trust) * cell_c
    vs = trust * ts + (1.0 - trust) * cell_s
    vc = cv2.GaussianBlur(vc, (0, 0), max(1.0, 0.15 * sw / cx))
    vs = cv2.GaussianBlur(vs, (0, 0), max(1.0, 0.15 * sw / cx))
    n = np.sqrt(vc * vc + vs * vs) + np.float32(1e-6)
    cos_k = [(vc * math.cos(math.radians(2 * a)) + vs * math.sin(math.radians(2 * a))) / n for a in _ANGLES]
    best = np.maximum.reduce(cos_k)
    wk = [np.clip((c - best) / np.float32(0.3) + 1.0, 0.0, 1.0) for c in cos_k]
    tot = np.add.reduce(wk)
    wk = [cv2.resize(x / tot, (w, h), interpolation=cv2.INTER_LINEAR) for x in wk]
    # Light and mid-light tones stay a wash with sparse strokes; crossing only in the darkest tones.
    d = dark * np.float32(1.0 / 255.0)
    h1 = np.clip((d - np.float32(0.22 - 0.08 * strength)) * np.float32(1.6), 0.0, 1.0)
    h2 = np.clip((d - np.float32(0.62 - 0.12 * strength)) * np.float32(2.5), 0.0, 1.0)
    out = []
    for k in range(len(_ANGLES)):
        t = np.maximum(wk[k] * h1, wk[(k - 1) % len(_ANGLES)] * h2)
        out.append(np.rint(t * np.float32(255.0)).astype(np.uint8))
    return out


def _abstract(
    gray: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Darkness (0..255), line potential (0..255), the tone LUT and hatch reach on the reduced copy."""
    h, w = gray.shape
    u = math.sqrt(h * w) / 600.0  # working pixels per relative unit
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    lut = _tone_lut(hist)
    light = np.take(lut, gray)
    # Structure-preserving smoothing first, so grain and texture never drive lines or tone.
    d = max(3, 2 * round(2.0 * u) + 1)
    light = cv2.bilateralFilter(light, d, 0.08, 2.0 * u, borderType=cv2.BORDER_REPLICATE)
    light = cv2.bilateralFilter(light, d, 0.06, 2.0 * u, borderType=cv2.BORDER_REPLICATE)

    # Edge tangent flow from the smoothed structure tensor.
    gx = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    c2, s2, _ = _orientation(gx, gy, max(1.0, 2.5 * u))
    cos_g = np.sqrt(np.maximum(0.5 * (1.0 + c2), 0.0))
    sin_g = np.sqrt(np.maximum(0.5 * (1.0 - c2), 0.0))
    sin_g = np.where(s2 < 0, -sin_g, sin_g)
    tx, ty = -sin_g, cos_g  # the tangent is the gradient turned a quarter

    # DoG across edges, then accumulated along the flow: Kang et al.'s FDoG in separable form.
    sc = max(0.7, 0.9 * u)
    g1 = cv2.GaussianBlur(light, (0, 0), sc, borderType=cv2.BORDER_REPLICATE)
    g2 = cv2.GaussianBlur(light, (0, 0), 1.6 * sc, borderType=cv2.BORDER_REPLICATE)
    dog = _flow_smooth(g1 - g2, tx, ty, max(1.0, 2.5 * u))
    # Threshold relative to the photo's own edge statistics with a floor above what grain can reach.
    scale = max(float(np.percentile(np.abs(dog), 97.0)) if dog.size else 0.0, 0.012)
    line = np.clip(-dog * np.float32(160.0 / scale) - 40.0, 0.0, 255.0)

    # Graphite tone: darkness grows as lightness falls; strength deepens it.
    tone = cv2.GaussianBlur(light, (0, 0), max(0.6, 1.2 * u), borderType=cv2.BORDER_REPLICATE)
    gamma = 1.6 - 0.5 * strength
    knee = np.float32(0.8 + 0.1 * strength)  # lighter than this stays bare paper
    dark = np.clip((knee - tone) / knee, 0.0, 1.0) ** gamma * np.float32(255.0)
    reach = _hatch_layout(tone, dark, strength)
    return dark.astype(np.uint8), line.astype(np.uint8), lut, reach


def _sharp_lines(
    gray: np.ndarray, lut: np.ndarray, coarse: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Line profile (0..255, 255 on a line's ridge) and pressure (0..255) on the line copy."""
    light: np.ndarray = np.take(lut, gray)
    light = cv2.GaussianBlur(light, (0, 0), 0.8 * sigma, borderType=cv2.BORDER_REPLICATE)
    g2 = cv2.GaussianBlur(light, (0, 0), 1.6 * sigma, borderType=cv2.BORDER_REPLICATE)
    light = cv2.subtract(light, g2)
    gate = cv2.resize(coarse, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    mask = gate > 24
    scale = max(float(np.percentile(-light[mask], 80.0)) if mask.any() else 0.0, 0.01)
    # Unclipped, so that strong edges keep a peaked profile instead of a wide plateau.
    fine = np.maximum(light * np.float32(-1.3 / scale) + np.float32(0.15), 0.0)
    fine *= gate
    # The ridge's height within reach: a pixel is on the line where the profile nears it, whatever the
    # pressure, so the enlarged line keeps a fixed relative width; a stronger neighbour also thins a
    # weaker lobe beside it.
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_CLOSE, _CLOSE))
    peak = cv2.dilate(fine, disc)
    # A closing fills the dips between grains along a ridge (valleys narrower than the disc), while a
    # ridge's peaked cross profile passes unchanged: the line stays a stroke instead of a chain of beads.
    fine = cv2.erode(peak, disc)
    # Evened along the line, so that small dips along a ridge do not break it into dashes.
    peak = cv2.GaussianBlur(peak, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)
    ratio = cv2.divide(fine, np.maximum(peak, np.float32(1.0)), scale=255.0)
    top = np.float32(255.0)
    return np.minimum(ratio, top).astype(np.uint8), np.minimum(peak, top).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _hatch_geometry(h: int, w: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Size-only, cached: per angle the darkness a pixel needs to be covered (uint8), grain rows, tooth."""
    big = max(h, w)
    g = math.sqrt(h * w / _WORK_PIXELS)  # linear size against the working copy
    pitch = max(2.5, _PITCH * g)
    m = max(1, int(g / 2.4))
    dash = max(4.0, big / 30.0)  # stroke length stays relative: a stroke spans the same share of the form
    # The thresholds are smooth across a stroke, so above 2 MP they are drawn at half size and enlarged;
    # the sharp stroke edge comes from the steep ramp applied at full size.
    f = 2 if g > 2.0 else 1
    th, tw = max(1, -(-h // f)), max(1, -(-w // f))
    xs = (np.arange(tw, dtype=np.float32) + np.float32(0.5)) * np.float32(w / tw) - np.float32(0.5)
    ys = (np.arange(th, dtype=np.float32) + np.float32(0.5)) * np.float32(h / th) - np.float32(0.5)
    rel = np.float32(2.0 * math.pi / big)
    _, press_tab, off_tab = _grain()
    sa = np.float32(255.0 / _SPAN)
    out = []
    for i, a in enumerate(_ANGLES):
        c, sn = math.cos(math.radians(a)), math.sin(math.radians(a))
        # Across (v, in pitches) and along (u, in dash lengths); a slow relative wobble bends the rows.
        vx = (xs * np.float32(sn / pitch) + np.float32(0.35) * np.sin(xs * rel * (3 + i) + i))[None, :]
        vy = (ys * np.float32(c / pitch) + np.float32(0.35) * np.sin(ys * rel * (4 + i) + 2 * i))[:, None]
        ux = (xs * np.float32(c / dash))[None, :]
        uy = (ys * np.float32(-sn / dash))[:, None]
        a8: np.ndarray = np.empty((th, tw), np.uint8)
        b8: np.ndarray = np.empty((th, tw), np.uint8)

        def strip(
            r0: int,
            r1: int,
            vx: np.ndarray = vx,
            vy: np.ndarray = vy,
            ux: np.ndarray = ux,
            uy: np.ndarray = uy,
            a8: np.ndarray = a8,
            b8: np.ndarray = b8,
        ) -> None:
            v = vx + vy[r0:r1]
            ri = np.floor(v)
            p = np.abs(v - ri - np.float32(0.5)) * np.float32(2.0)  # 0 on a stroke's axis, 1 between
            ri_i = ri.astype(np.int32)
            # Each stroke row is cut into dashes of its own offset; each dash has its own pressure.
            u = ux + uy[r0:r1] + np.take(off_tab, ri_i & 1023)
            si = np.floor(u)
            q = u - si - np.float32(0.5)
            q *= q
            q *= q  # taper: 0 mid-dash, 1/16 at its ends
            si_i = (si.astype(np.int32) * 151 + ri_i * 73) & 4095
            # The stroke covers the pixel where the half-width 1.25 d - t reaches it (d: darkness 0..1).
            t = np.take(press_tab, si_i) * np.float32(0.45) + q * np.float32(6.0)
            if m == 1:
                edge = t + p
                fade = t
            else:
                # Bands twice as wide as the reach, holding m thin strokes of at least half their pitch.
                vf = v * np.float32(m) + np.float32(0.5 - 0.5 * m)
                pf = np.abs(vf - np.floor(vf) - np.float32(0.5)) * np.float32(2.0)
                edge = t + p * np.float32(0.5)
                fade = t + np.maximum(pf * np.float32(2.0) - np.float32(1.0), np.float32(0.0))
            np.copyto(a8[r0:r1], np.clip(edge * (sa / np.float32(1.25)), 0.0, 255.0), casting="unsafe")
            np.copyto(b8[r0:r1], np.clip(fade * (sa / np.float32(1.25)), 0.0, 255.0), casting="unsafe")

        F.parallel(strip, th, _STRIP)
        if f > 1:
            a8 = cv2.resize(a8, (w, h), interpolation=cv2.INTER_LINEAR)
            b8 = cv2.resize(b8, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append((a8, b8))
    tiles = _grain()[0]
    reps = -(-w // _TILE)
    rows = np.stack([np.tile(t, (1, reps))[:, :w] for t in tiles])
    rows = np.rint(rows * np.float32(255.0 / 1.3)).astype(np.uint8)
    gh, gw = (max(1, round(_TOOTH * h / big)), _TOOTH) if w >= h else (_TOOTH, max(1, round(_TOOTH * w / h)))
    t = min(1.0, _TEX / big)
    tooth = _tooth(max(1, round(h * t)), max(1, round(w * t)), gh, gw)
    if tooth.shape != (h, w):
        tooth = cv2.resize(tooth, (w, h), interpolation=cv2.INTER_LINEAR)
    return out, rows, tooth


def render(bgr: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """Graphite sketch; ``strength`` 0..1 : from light outlines and sparse hatching to dense dark shading."""
    s = float(min(max(strength, 0.0), 1.0))
    h, w = bgr.shape[:2]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)

    def reduced(gray: np.ndarray, pixels: int) -> np.ndarray:
        if h * w <= pixels:
            return gray
        f = math.sqrt(pixels / (h * w))
        return cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)

    small = reduced(gray, _WORK_PIXELS)
    dark_s, line_s, lut, reach_s = _abstract(small, s)
    g = math.sqrt(h * w / _WORK_PIXELS)  # linear size against the working copy
    press_s = None
    if g > 1.0:
        lg = reduced(gray, _LINE_PIXELS)
        fl = math.sqrt(h * w / lg.size)
        # Line width in full-res pixels grows like the square root of the size.
        line_s, press_s = _sharp_lines(lg, lut, line_s, max(0.6, 1.1 * math.sqrt(g) / fl))
    del gray

    def full(plane: np.ndarray) -> np.ndarray:
        if plane.shape == (h, w):
            return plane
        return cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR)

    dark = full(dark_s)
    line = full(line_s)
    press = None if press_s is None else full(press_s)
    reach = [full(p) for p in reach_s]
    del reach_s
    geo, grain_rows, tooth = _hatch_geometry(h, w)

    # Strokes are laid in bands at a relative pitch, so the drawing agrees at every size (SSIM 0.82 between
    # 0.3 MP and 6 MP; two strokes per band already cost 0.07 there); from about 11.5 MP on each band holds
    # m thin strokes, keeping the stroke pitch near 12 px. Coverage of one angle is
    # ramp(darkness - edge threshold) * ramp(darkness - fade threshold), each ramp about a pixel wide.
    pitch = max(2.5, _PITCH * g)
    m = max(1, int(g / 2.4))
    sharp = 0.5 * pitch  # the profile's edge is about one pixel wide
    if m == 1:
        ka, kb, ob = 1.25 * sharp, 2.5 * sharp, 0.0
    else:
        ka, kb, ob = 2.5 * sharp, 1.25 * sharp / (2 * m), 127.5
    span = _SPAN
    k_tone = 0.35 + 0.12 * s
    k_hatch = 0.4 + 0.2 * s
    k_line = (0.6 + 0.35 * s) / 255.0
    # Above the working size the line cores are thin: a steeper ramp gives them a crisp edge.
    l_gain, l_off = 1.4, 1.15
    l_a, l_b = 255.0 * l_gain * k_line, 255.0 * l_off
    out = np.empty((h, w), np.uint8)

    def strip(r0: int, r1: int) -> None:
        n = (r1 - r0, w)
        v = F.scratch("sk.v", n, np.uint8)
        c1 = F.scratch("sk.c1", n, np.uint8)
        c2 = F.scratch("sk.c2", n, np.uint8)
        gt = F.scratch("sk.gt", n, np.uint8)
        skip = F.scratch("sk.sk", n, np.uint8)
        tt = tooth[r0:r1]
        # Soft graphite wash under the strokes, catching on the paper's tooth.
        cv2.convertScaleAbs(tt, c1, 0.5, 127.5)  # 0.5 + 0.5 tooth
        cv2.multiply(dark[r0:r1], c1, dst=c1, scale=k_tone / 255.0)
        cv2.bitwise_not(c1, dst=v)  # 255 - wash
        cv2.convertScaleAbs(tt, skip, 0.4, 153.0)  # (0.75 + 0.5 tooth) / 1.25
        t0 = r0 % _TILE
        for k, (a8, b8) in enumerate(geo):
            rk = reach[k][r0:r1]
            if not cv2.countNonZero(rk):
                continue
            cv2.addWeighted(rk, ka, a8[r0:r1], -ka * span, 127.5, dst=c1)
            cv2.addWeighted(rk, kb, b8[r0:r1], -kb * span, ob, dst=c2)
            cv2.multiply(c1, c2, dst=c1, scale=1.0 / 255.0)
            # Graphite grain streaked along the stroke, and the tooth it skips over.
            cv2.multiply(grain_rows[k, t0 : t0 + r1 - r0], skip, dst=gt, scale=1.0 / 255.0)
            cv2.multiply(c1, gt, dst=c1, scale=1.3 * 1.25 / 255.0)
            cv2.convertScaleAbs(c1, c1, -k_hatch, 255.0)
            cv2.multiply(v, c1, dst=v, scale=1.0 / 255.0)
        if press is None:
            cv2.addWeighted(line[r0:r1], -l_a, line[r0:r1], 0.0, l_b, dst=c1)
        else:
            # Coverage: a steep ramp on the enlarged ridge profile, about a pixel wide at the line's edge.
            cv2.addWeighted(line[r0:r1], _RAMP, line[r0:r1], 0.0, -_RAMP * 255.0 * _CORE, dst=c1)
            cv2.multiply(c1, press[r0:r1], dst=c1, scale=1.3 * k_line)
            cv2.bitwise_not(c1, dst=c1)
        cv2.multiply(v, c1, dst=v, scale=1.0 / 255.0)
        # Paper: a faint tooth on warm-white paper.
        cv2.convertScaleAbs(tt, c1, 6.0 / 255.0, _PAPER - 3.0)
        cv2.multiply(v, c1, dst=out[r0:r1], scale=1.0 / 255.0)

    F.parallel(strip, h, _STRIP)
    return cv2.merge([out, out, out])
