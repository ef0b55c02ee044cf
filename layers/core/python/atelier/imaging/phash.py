"""64-bit perceptual hash, bit-identical to ``imagehash.phash`` on the same decoded pixels, without scipy.

The reference pipeline is Pillow's ``convert("L")``, Pillow's ``resize((32, 32), LANCZOS)`` and
``scipy.fftpack.dct`` along both axes.

The first two steps run in ``libatelier_phash.so`` (``layers/core/native/phash_resize.c``, loaded with
ctypes): Pillow's integer luma and its two-pass fixed-point Lanczos convolution, reproduced operation for
operation, in one pass over the pixels that never writes the full-size grey image; its coefficients are
computed once per image size and kept. Where the library was not built, Pillow itself runs those two
steps (the very code imagehash calls; the raw decoder swaps BGR to RGB in C), about five times slower.
Both give the same bytes; tests check each against imagehash.

scipy is too large for the Lambda layer, so the DCT-II is reproduced with the same floating-point
operations in the same order, so every bit of the hash agrees, ties with the median included: pocketfft's
``T_dcst23`` algorithm (pre-twiddle, a backward real FFT of length 32 through numpy's pocketfft,
post-twiddle with pocketfft's own table of cosines).
"""

from __future__ import annotations

import ctypes
import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image

HASH_SIZE = 8
_SIDE = 32  # hash_size * highfreq_factor in imagehash
LIBRARY = Path(__file__).with_name("libatelier_phash.so")


def _bgr_checked(bgr: np.ndarray) -> tuple[int, int]:
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 BGR array")
    height, width = int(bgr.shape[0]), int(bgr.shape[1])
    if height < 1 or width < 1:
        raise ValueError("empty image")
    return height, width


def resize_luma_pillow(bgr: np.ndarray) -> np.ndarray:
    """The 32x32 image of ``Image.fromarray(rgb).convert("L").resize((32, 32), LANCZOS)``, as float64."""
    height, width = _bgr_checked(bgr)
    rgb = Image.frombuffer("RGB", (width, height), np.ascontiguousarray(bgr), "raw", "BGR", 0, 1)
    small = rgb.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """The native kernel, or None where it was not built."""
    if not LIBRARY.is_file():
        return None
    lib = ctypes.CDLL(str(LIBRARY))
    ptr = ctypes.c_void_p
    lib.atelier_phash_ksize.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.atelier_phash_ksize.restype = ctypes.c_int
    lib.atelier_phash_coefficients.argtypes = [ctypes.c_int, ctypes.c_int, ptr, ptr]
    lib.atelier_phash_coefficients.restype = ctypes.c_int
    lib.atelier_phash_luma_resize.argtypes = [ptr, ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t, ctypes.c_int]
    lib.atelier_phash_luma_resize.argtypes += [ptr, ptr, ptr, ptr, ptr]
    lib.atelier_phash_luma_resize.restype = ctypes.c_int
    return lib


def backend() -> str:
    """``native`` when the compiled kernel is loaded, else ``pillow``."""
    return "native" if _library() is not None else "pillow"


@functools.lru_cache(maxsize=16)
def _coefficients(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's fixed-point Lanczos coefficients for resampling ``size`` samples to 32 (read-only)."""
    lib = _library()
    assert lib is not None
    ksize = lib.atelier_phash_ksize(size, _SIDE)
    bounds = np.empty(2 * _SIDE, np.intc)
    kk = np.empty(_SIDE * ksize, np.int32)
    if lib.atelier_phash_coefficients(size, _SIDE, bounds.ctypes.data, kk.ctypes.data) != 0:
        raise MemoryError("pHash coefficients")
    bounds.flags.writeable = kk.flags.writeable = False
    return bounds, kk


def resize_luma_native(bgr: np.ndarray) -> np.ndarray:
    """The same 32x32 image as :func:`resize_luma_pillow`, from the compiled kernel."""
    height, width = _bgr_checked(bgr)
    lib = _library()
    if lib is None:
        raise RuntimeError(f"{LIBRARY.name} is not built")
    if bgr.strides[1:] != (3, 1):
        bgr = np.ascontiguousarray(bgr)
    hb, hk = _coefficients(width)
    vb, vk = _coefficients(height)
    out = np.empty((_SIDE, _SIDE), np.uint8)
    args = (hb.ctypes.data, hk.ctypes.data, vb.ctypes.data, vk.ctypes.data, out.ctypes.data)
    if lib.atelier_phash_luma_resize(bgr.ctypes.data, height, width, bgr.strides[0], _SIDE, *args) != 0:
        raise MemoryError("pHash resize")
    return out.astype(np.float64)


def resize_luma(bgr: np.ndarray) -> np.ndarray:
    """The 32x32 luma image imagehash hashes, as float64: native kernel where built, else Pillow."""
    if _library() is not None:
        return resize_luma_native(bgr)
    return resize_luma_pillow(bgr)


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


def hash_of_luma(pixels: np.ndarray) -> int:
    """The 64-bit hash of a 32x32 luma image: low-frequency DCT-II coefficients against their median."""
    coeffs = dct2(dct2(pixels).T).T
    low = coeffs[:HASH_SIZE, :HASH_SIZE]
    return int.from_bytes(np.packbits(low > np.median(low)).tobytes(), "big")  # first bit = bit 63


def phash(bgr: np.ndarray) -> int:
    """The 64-bit pHash of an HxWx3 uint8 BGR image, bit 63 first in row-major order, as imagehash."""
    return hash_of_luma(resize_luma(bgr))


def to_hex(h: int) -> str:
    """The 16-digit hex form, equal to ``str(imagehash.phash(...))``."""
    return f"{h:016x}"


def from_hex(text: str) -> int:
    """The integer hash from its 16-digit hex form."""
    return int(text, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (a ^ b).bit_count()
