"""64-bit perceptual hash, bit-identical to ``imagehash.phash`` on the same decoded pixels, with numpy only.

The reference pipeline is Pillow's ``convert("L")``, Pillow's ``resize((32, 32), LANCZOS)`` and
``scipy.fftpack.dct`` along both axes. Each step is reproduced with the same integer or floating-point
operations in the same order, so every bit of the hash agrees, ties with the median included:

- luma: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``, computed as exact integers in float32;
- resampling: Pillow's ``precompute_coeffs`` in double precision (``math.sin``, sequential sums),
  coefficients rounded to 22-bit fixed point, a horizontal pass over the rows the vertical pass reads,
  ``clip8`` in between, then the vertical pass; the integer sums are taken in float64, exact below 2**53;
- DCT-II: pocketfft's ``T_dcst23`` algorithm (pre-twiddle, a backward real FFT of length 32 through
  numpy's pocketfft, post-twiddle with pocketfft's own table of cosines).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

HASH_SIZE = 8
_SIDE = 32  # hash_size * highfreq_factor in imagehash
_PRECISION_BITS = 22  # Pillow's Resample.c: 32 - 8 - 2
_HALF = float(1 << (_PRECISION_BITS - 1))
_SCALE = float(1 << _PRECISION_BITS)
# Pillow's rgb2l on B, G, R plus its rounding offset, scaled by 2**-16: every product and partial sum is a
# multiple of 2**-16 below 256, so float32 holds it exactly and the floor is Pillow's ``>> 16``.
_LUMA_MATRIX = np.array([[7471.0, 38470.0, 19595.0, 32768.0]], dtype=np.float32) / np.float32(65536.0)
_ROW_BLOCK = 256


def _lanczos(x: float) -> float:
    """Pillow's truncated sinc (support 3), evaluated in double precision with the C library's sin."""
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3)
    return 0.0


def _sinc(x: float) -> float:
    """Pillow's sinc_filter."""
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


@functools.lru_cache(maxsize=32)
def _coefficients(in_size: int, out_size: int = _SIDE) -> tuple[np.ndarray, int, int]:
    """Pillow's fixed-point LANCZOS weights as a dense (out_size, in_size) float64 matrix, and rows used."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    dense = np.zeros((out_size, in_size), dtype=np.float64)
    first = in_size
    last = 0
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for w in weights:
            ww += w
        for x, w in enumerate(weights):
            k = w / ww if ww != 0.0 else w
            dense[xx, xmin + x] = float(int(-0.5 + k * _SCALE) if k < 0 else int(0.5 + k * _SCALE))
        first = min(first, xmin)
        last = max(last, xmin + xmax)
    return dense, first, last


@functools.lru_cache(maxsize=32)
def _horizontal(in_size: int) -> np.ndarray:
    """The horizontal weights transposed to (in_size, 32), C-contiguous for the row-block products."""
    return np.ascontiguousarray(_coefficients(in_size)[0].T)


def _clip8(sums: np.ndarray) -> np.ndarray:
    """Pillow's clip8 on 22-bit fixed-point sums (rounding offset added here), as float64 in [0, 255]."""
    out = np.floor((sums + _HALF) * (1.0 / _SCALE))
    return np.clip(out, 0.0, 255.0, out=out)


def _luma_rows(bgr: np.ndarray, y0: int, y1: int) -> np.ndarray:
    """Pillow's 8-bit luma of rows y0..y1 as float64; float32 holds every intermediate sum exactly."""
    block = bgr[y0:y1].astype(np.float32)
    values = cv2.transform(block, _LUMA_MATRIX)
    np.floor(values, out=values)
    return values.astype(np.float64)


def vertical_first(height: int, width: int, side: int = _SIDE) -> bool:
    """Whether Pillow 13 runs the vertical pass before the horizontal one for this shape.

    Pillow picks the cheaper order; for a square target of ``side`` the choice measured over every shape
    tried (tests/unit/test_phash.py pins the boundary) is: vertical first when the source is taller than
    the target and ``2 * width < height + side``.
    """
    return height > side and 2 * width < height + side


def resize_luma(bgr: np.ndarray) -> np.ndarray:
    """The 32x32 image of ``Image.fromarray(rgb).convert("L").resize((32, 32), LANCZOS)``, as float64."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 BGR array")
    height, width = int(bgr.shape[0]), int(bgr.shape[1])
    if height < 1 or width < 1:
        raise ValueError("empty image")
    need_h, need_v = width != _SIDE, height != _SIDE
    if not need_h and not need_v:
        return _luma_rows(bgr, 0, height)
    vertical, y_first, y_last = _coefficients(height)
    if not need_h:
        return _clip8(vertical @ _luma_rows(bgr, 0, height))
    horizontal_t = _horizontal(width)
    if need_v and vertical_first(height, width):
        sums = np.zeros((_SIDE, width), dtype=np.float64)
        for y0 in range(0, height, _ROW_BLOCK):
            y1 = min(y0 + _ROW_BLOCK, height)
            sums += vertical[:, y0:y1] @ _luma_rows(bgr, y0, y1)
        return _clip8(_clip8(sums) @ horizontal_t)
    if not need_v:
        y_first, y_last = 0, height
    rows = np.empty((y_last - y_first, _SIDE), dtype=np.float64)
    for y0 in range(y_first, y_last, _ROW_BLOCK):
        y1 = min(y0 + _ROW_BLOCK, y_last)
        rows[y0 - y_first : y1 - y_first] = _luma_rows(bgr, y0, y1) @ horizontal_t
    source = _clip8(rows)
    if not need_v:
        return source
    return _clip8(vertical[:, y_first:y_last] @ source)


@functools.lru_cache(maxsize=1)
def _dct_twiddles(n: int = _SIDE) -> np.ndarray:
    """pocketfft's T_dcst23 twiddles: real parts of sincos_2pibyn(4n)[1..n], computed as pocketfft does."""
    size = 4 * n
    ang = math.pi / (4 * size)

    def calc(x: int) -> tuple[float, float]:
        x <<= 3
        if x >= 4 * size:
            x = 8 * size - x
            if x < 2 * size:
                if x < size:
                    return math.cos(x * ang), -math.sin(x * ang)
                return math.sin((2 * size - x) * ang), -math.cos((2 * size - x) * ang)
            x -= 2 * size
            if x < size:
                return -math.sin(x * ang), -math.cos(x * ang)
            return -math.cos((2 * size - x) * ang), -math.sin((2 * size - x) * ang)
        if x < 2 * size:
            if x < size:
                return math.cos(x * ang), math.sin(x * ang)
            return math.sin((2 * size - x) * ang), math.cos((2 * size - x) * ang)
        x -= 2 * size
        if x < size:
            return -math.sin(x * ang), math.cos(x * ang)
        return -math.cos((2 * size - x) * ang), math.sin((2 * size - x) * ang)

    nval = (size + 2) // 2
    shift = 1
    while (1 << shift) * (1 << shift) < nval:
        shift += 1
    mask = (1 << shift) - 1
    v1 = [(1.0, 0.0)] + [calc(i) for i in range(1, mask + 1)]
    v2 = [(1.0, 0.0)] + [calc(i * (mask + 1)) for i in range(1, (nval + mask) // (mask + 1))]
    out = []
    for idx in range(1, n + 1):
        a, b = v1[idx & mask], v2[idx >> shift]
        out.append(a[0] * b[0] - a[1] * b[1])
    return np.array(out, dtype=np.float64)


def dct2(x: np.ndarray) -> np.ndarray:
    """Unnormalised DCT-II along axis 0 of a (32, m) array, bit-identical to ``scipy.fftpack.dct``."""
    n = x.shape[0]
    half = n // 2
    tw = _dct_twiddles(n)
    c = np.array(x, dtype=np.float64)
    c[0] *= 2.0
    c[n - 1] *= 2.0
    odd = c[1 : n - 1 : 2].copy()
    even = c[2 : n - 1 : 2].copy()
    c[2 : n - 1 : 2] = even - odd
    c[1 : n - 1 : 2] = odd + even
    spectrum = np.empty((half + 1, *c.shape[1:]), dtype=np.complex128)
    spectrum[0] = c[0]
    spectrum[1:half] = c[1 : n - 1 : 2] + 1j * c[2 : n - 1 : 2]
    spectrum[half] = c[n - 1]
    y = np.fft.irfft(spectrum, n=n, axis=0, norm="forward")
    k = np.arange(1, half)
    kc = n - k
    tk = tw[k - 1][:, None]
    tkc = tw[kc - 1][:, None]
    t1 = tk * y[kc] + tkc * y[k]
    t2 = tk * y[k] - tkc * y[kc]
    out = y.copy()
    out[k] = 0.5 * (t1 + t2)
    out[kc] = 0.5 * (t1 - t2)
    out[half] = y[half] * tw[half - 1]
    return out


def hash_bits(bgr: np.ndarray) -> np.ndarray:
    """The 8x8 boolean matrix of ``imagehash.phash`` for an HxWx3 uint8 BGR image."""
    pixels = resize_luma(bgr)
    coeffs = dct2(dct2(pixels).T).T
    low = coeffs[:HASH_SIZE, :HASH_SIZE]
    return np.asarray(low > np.median(low))


def phash(bgr: np.ndarray) -> int:
    """The 64-bit pHash of an HxWx3 uint8 BGR image, bit 63 first in row-major order, as imagehash."""
    value = 0
    for bit in hash_bits(bgr).ravel():
        value = (value << 1) | int(bit)
    return value


def to_hex(h: int) -> str:
    """The 16-digit hex form, equal to ``str(imagehash.phash(...))``."""
    return f"{h:016x}"


def from_hex(text: str) -> int:
    """The integer hash from its 16-digit hex form."""
    return int(text, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (a ^ b).bit_count()
