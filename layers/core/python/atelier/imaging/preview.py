"""A small decode of an accepted image, for ``atelier inspect`` and its pHash: never the full bitmap.

At most about :data:`PREVIEW_PIXELS` pixels come out, and the decoders hold little more:

- JPEG: libjpeg's DCT-domain scaling (1/2, 1/4, 1/8), as the full decode uses for the working size;
- PNG: the image data streams through zlib one row at a time; each row is unfiltered (the native
  ``libatelier_png.so``) and folded into block averages at once;
- WebP: libwebp's own scaled decode (``WebPDecode`` with ``use_scaling``), through ctypes on the libwebp
  that Pillow ships. A lossy WebP is decoded a few rows at a time; a lossless one still needs four bytes
  per pixel inside libwebp, whose back-references may reach any earlier pixel.

Where a native part is missing, the image is decoded in full and reduced, as
:func:`atelier.imaging.decode.decode` does. The whole-file checks of
:mod:`atelier.imaging.container` run first either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from atelier.config import read_limits
from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits
from atelier.imaging import container
from atelier.imaging.decode import decode, fit_size, jpeg_pixels, jpeg_reduction, orient, read_whole, to_bgr8
from atelier.imaging.probe import ImageInfo, sniff

PREVIEW_PIXELS = 1_000_000
PNG_LIBRARY = Path(__file__).with_name("libatelier_png.so")


def preview(
    data: bytes, limits: Limits | None = None, info: ImageInfo | None = None, pixels: int = PREVIEW_PIXELS
) -> tuple[np.ndarray, ImageInfo]:
    """The image as 8-bit BGR, oriented, at most ``pixels`` pixels, and its header with the orientation the
    whole file gives; or raise ImageRejected."""
    limits = limits or read_limits()
    native = {"png": _png_library, "webp": _libwebp}.get(info.format if info else sniff(data[:64]))
    if native is not None and native() is None:  # a native part is missing: decode in full, then reduce
        decoded = decode(data, replace(limits, working_pixels=pixels), info)
        return decoded.bgr, decoded.info
    info, box, budget = read_whole(data, limits, info)
    if info.format == "jpeg":
        img = jpeg_pixels(box.data, info, jpeg_reduction(info, pixels), [])
    elif info.format == "png":
        img = _png_reduced(box, pixels, budget)
    else:
        img = _webp_scaled(box.data, *fit_size(info.width, info.height, pixels))
    budget.check("decoding")
    bgr, _ = to_bgr8(img)
    bgr, _ = orient(bgr, None, info.orientation)
    return bgr, info


# --- PNG, a row at a time -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _png_library() -> ctypes.CDLL | None:
    if not PNG_LIBRARY.is_file():
        return None
    lib = ctypes.CDLL(str(PNG_LIBRARY))
    lib.atelier_png_unfilter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.atelier_png_unfilter.argtypes += [ctypes.c_int]
    lib.atelier_png_unfilter.restype = ctypes.c_int
    return lib


class _Rows:
    """The inflated image data of a PNG, handed out a row at a time."""

    def __init__(self, data: bytes, idat: tuple[tuple[int, int], ...]) -> None:
        self.view = memoryview(data)
        self.chunks = iter(idat)
        self.inflater = zlib.decompressobj()
        self.pending: bytes | memoryview = b""
        self.buffer = bytearray()

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self.pending:
                start_end = next(self.chunks, None)
                if start_end is None or self.inflater.eof:
                    raise ImageRejected("corrupt", "the PNG's image data ends early")
                self.pending = self.view[start_end[0] : start_end[1]]
            self.buffer += self.inflater.decompress(self.pending, max(size, container.INFLATE_STEP))
            self.pending = self.inflater.unconsumed_tail
        row = bytes(self.buffer[:size])
        del self.buffer[:size]
        return row


def _samples(row: np.ndarray, columns: int, depth: int, channels: int) -> np.ndarray:
    """The row's samples as a (columns, channels) array, in their own range (0 .. 2**depth - 1)."""
    if depth == 16:
        return row.view(">u2")[: columns * channels].reshape(columns, channels)
    if depth == 8:
        return row[: columns * channels].reshape(columns, channels)
    bits = np.unpackbits(row)[: columns * depth].reshape(columns, depth)
    weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
    return (bits * weights).sum(axis=1, dtype=np.uint8).reshape(columns, 1)


def _to_bgr(samples: np.ndarray, depth: int, colour: int, palette: np.ndarray) -> np.ndarray:
    if colour == 3:
        index = np.minimum(samples[:, 0], len(palette) - 1)
        return palette[index]
    scale = 255.0 / ((1 << depth) - 1)
    values = samples.astype(np.float32) * np.float32(scale)
    if colour in (0, 4):  # grey, grey + alpha
        return np.repeat(values[:, :1], 3, axis=1)
    return values[:, 2::-1]  # RGB(A) to BGR


def _png_reduced(box: container.Container, pixels: int, budget: container.Budget) -> np.ndarray:
    lib = _png_library()
    assert lib is not None  # preview() decodes in full without it
    width, height, depth, colour, interlaced = container.png_header(box.data)
    channels = container.CHANNELS[colour]
    bits = depth * channels
    step = max(1, math.ceil(math.sqrt(width * height / pixels)))  # each output pixel averages step x step
    out_w, out_h = -(-width // step), -(-height // step)
    sums = np.zeros((out_h, out_w, 3), np.float32)
    counts = np.zeros((out_h, out_w), np.float32)
    rgb = np.frombuffer(box.palette[: len(box.palette) // 3 * 3] or bytes(3), np.uint8).reshape(-1, 3)
    palette = rgb[:, ::-1].astype(np.float32)
    rows = _Rows(box.data, box.idat)
    for x0, y0, dx, dy, columns, row_count in container.png_passes(width, height, interlaced):
        size = container.png_row_bytes(columns, bits)
        bins = (x0 + dx * np.arange(columns)) // step
        prev = np.zeros(size, np.uint8)
        for r in range(row_count):
            raw = rows.read(1 + size)
            row = np.frombuffer(raw, np.uint8, size, 1).copy()
            if lib.atelier_png_unfilter(row.ctypes.data, prev.ctypes.data, size, max(1, bits // 8), raw[0]):
                raise ImageRejected(
                    "corrupt", f"the PNG's row {y0 + r * dy} has an unknown filter type {raw[0]}"
                )
            prev = row
            bgr = _to_bgr(_samples(row, columns, depth, channels), depth, colour, palette)
            band = (y0 + r * dy) // step
            for c in range(3):
                sums[band, :, c] += np.bincount(bins, weights=bgr[:, c], minlength=out_w)
            counts[band] += np.bincount(bins, minlength=out_w)
            if r % 256 == 0:
                budget.check("decoding the PNG")
    return np.rint(sums / np.maximum(counts, 1)[:, :, None]).astype(np.uint8)


# --- WebP, scaled by libwebp ----------------------------------------------------------------------

_WEBP_DECODER_ABI_VERSION = 0x0209
_MODE_BGR = 2


class _Features(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("width", "height", "has_alpha", "has_animation", "format")] + [
        ("pad", ctypes.c_uint32 * 5)
    ]


class _RGBA(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVA(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in ("y", "u", "v", "a")]
    _fields_ += [(n, ctypes.c_int) for n in ("y_stride", "u_stride", "v_stride", "a_stride")]
    _fields_ += [(n, ctypes.c_size_t) for n in ("y_size", "u_size", "v_size", "a_size")]


class _Planes(ctypes.Union):
    _fields_ = [("RGBA", _RGBA), ("YUVA", _YUVA)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("colorspace", "width", "height", "is_external_memory")]
    _fields_ += [("u", _Planes), ("pad", ctypes.c_uint32 * 4), ("private_memory", ctypes.c_void_p)]


class _Options(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_int)
        for n in (
            "bypass_filtering",
            "no_fancy_upsampling",
            "use_cropping",
            "crop_left",
            "crop_top",
            "crop_width",
            "crop_height",
            "use_scaling",
            "scaled_width",
            "scaled_height",
            "use_threads",
            "dithering_strength",
            "flip",
            "alpha_dithering_strength",
        )
    ] + [("pad", ctypes.c_uint32 * 5)]


class _Config(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


@functools.lru_cache(maxsize=1)
def _libwebp() -> ctypes.CDLL | None:
    """The libwebp Pillow ships (or the system's), or None."""
    import PIL

    bundled = sorted((Path(PIL.__file__).resolve().parent.parent / "pillow.libs").glob("libwebp-*.so*"))
    for candidate in [*map(str, bundled), ctypes.util.find_library("webp")]:
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_Config), ctypes.c_int]
        lib.WebPInitDecoderConfigInternal.restype = ctypes.c_int
        lib.WebPDecode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Config)]
        lib.WebPDecode.restype = ctypes.c_int
        lib.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(_DecBuffer)]
        lib.WebPFreeDecBuffer.restype = None
        config = _Config()
        if lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _WEBP_DECODER_ABI_VERSION):
            return lib
    return None


def _webp_scaled(data: bytes, width: int, height: int) -> np.ndarray:
    lib = _libwebp()
    assert lib is not None  # preview() decodes in full without it
    out = np.empty((height, width, 3), np.uint8)
    config = _Config()
    lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _WEBP_DECODER_ABI_VERSION)
    config.options.use_scaling, config.options.scaled_width, config.options.scaled_height = 1, width, height
    config.output.colorspace, config.output.is_external_memory = _MODE_BGR, 1
    config.output.u.RGBA.rgba, config.output.u.RGBA.stride = out.ctypes.data, width * 3
    config.output.u.RGBA.size = out.nbytes
    status = lib.WebPDecode(data, len(data), ctypes.byref(config))
    lib.WebPFreeDecBuffer(ctypes.byref(config.output))
    if status != 0:
        raise ImageRejected("corrupt", f"the WebP data could not be decoded (libwebp status {status})")
    return out
