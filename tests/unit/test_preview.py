"""The reduced decode behind `atelier inspect`: the same picture as the full decode, never the full bitmap."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits
from atelier.imaging import preview
from atelier.imaging.decode import decode
from tests import imaging


def block_mean(img: np.ndarray, step: int) -> np.ndarray:
    """Each step x step block averaged (partial blocks at the edges too)."""
    h, w = img.shape[:2]
    padded = np.zeros((-(-h // step) * step, -(-w // step) * step, 3), np.float64)
    weight = np.zeros(padded.shape[:2], np.float64)
    padded[:h, :w], weight[:h, :w] = img, 1
    blocks = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step, 3).sum(axis=(1, 3))
    counts = weight.reshape(weight.shape[0] // step, step, weight.shape[1] // step, step).sum(axis=(1, 3))
    return blocks / counts[:, :, None]


def close_to_full(data: bytes, pixels: int = 4000) -> None:
    """The preview is the full decode averaged over blocks: within a level or two."""
    small, _ = preview.preview(data, Limits(), pixels=pixels)
    full = decode(data, Limits()).bgr
    assert small.shape[0] * small.shape[1] <= pixels
    step = -(-full.shape[1] // small.shape[1])
    reference = block_mean(full, step)
    if reference.shape != small.shape:  # libwebp scales to the exact size, averaging what each pixel covers
        reference = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert float(np.abs(small.astype(np.float64) - reference).mean()) < 2.0


def _rgb(img: np.ndarray) -> Image.Image:
    return Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize(
    "kind",
    ["rgb", "rgba", "rgb16", "grey", "palette", "grey1", "jpeg", "jpeg-exif6", "webp", "webp-lossless"],
)
def test_the_preview_is_the_full_decode_reduced(kind: str) -> None:
    img = imaging.photo(400, 296)
    data = {
        "rgb": lambda: imaging.png(img),
        "rgba": lambda: imaging.png(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)),
        "rgb16": lambda: imaging.png(img.astype(np.uint16) * 257),
        "grey": lambda: imaging.png(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)),
        "palette": lambda: imaging.pil_bytes(_rgb(img).quantize(64), "PNG"),
        "grey1": lambda: imaging.pil_bytes(_rgb(img).convert("1"), "PNG"),
        "jpeg": lambda: imaging.jpeg(img),
        "jpeg-exif6": lambda: imaging.with_orientation(img, 6),
        "webp": lambda: imaging.webp(img),
        "webp-lossless": lambda: imaging.webp(img, 101),
    }[kind]()
    close_to_full(data)


def test_an_interlaced_png_previews_as_its_full_decode() -> None:
    img = imaging.photo(203, 117)
    data = imaging.png_interlaced(img)
    assert np.array_equal(decode(data).bgr, img)
    close_to_full(data)


def test_a_png_row_with_an_unknown_filter_is_corrupt() -> None:
    rows = b"".join(b"\x07" + bytes(16) for _ in range(8))
    with pytest.raises(ImageRejected, match="unknown filter type 7"):
        preview.preview(imaging.png_from_rows(16, 8, rows))


@pytest.mark.slow
def test_a_49_mp_16_bit_rgba_png_previews_without_its_full_bitmap() -> None:
    """392 MB decoded in full (OpenCV); the preview allocates its 1 MP block sums and a few rows."""
    w, h = 7000, 7000
    comp = zlib.compressobj(9)
    row = b"\x00" + np.tile(np.array([0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xFF, 0xFF], np.uint8), w).tobytes()
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + imaging.chunk(b"IHDR", ihdr)
        + imaging.chunk(b"IDAT", body)
        + imaging.chunk(b"IEND", b"")
    )
    tracemalloc.start()
    try:
        small, _ = preview.preview(data, Limits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert small.shape[0] * small.shape[1] <= preview.PREVIEW_PIXELS
    assert tuple(small[0, 0]) == (0x9A, 0x56, 0x12)  # B, G, R of 0x1234, 0x5678, 0x9ABC in 8 bits
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced"
