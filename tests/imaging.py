"""Test images made on the spot: real encoders, known content, chosen headers."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def photo(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A photo-like BGR image: a real sample resized, so it has edges and texture."""
    base = cv2.imread(str(SAMPLES / "chelsea.jpg"), cv2.IMREAD_COLOR)
    assert base is not None
    img = cv2.resize(base, (width, height), interpolation=cv2.INTER_AREA if width < 451 else cv2.INTER_CUBIC)
    rng = np.random.default_rng(seed)
    noise = rng.integers(-3, 4, size=img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    """Baseline JPEG from OpenCV."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png(img: np.ndarray) -> bytes:
    """PNG from OpenCV (8 or 16 bit, grey, BGR or BGRA)."""
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def webp(img: np.ndarray, quality: int = 90) -> bytes:
    """WebP from OpenCV: lossy VP8 below quality 101, lossless VP8L above; BGRA gives VP8X with alpha."""
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, quality])
    assert ok
    return buf.tobytes()


def pil_bytes(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    """Encode with Pillow (progressive JPEG, EXIF, palette PNG, GIF, TIFF, BMP ...)."""
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def with_orientation(img_bgr: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose EXIF says ``orientation`` (and carries a GPS tag, to prove outputs drop metadata)."""
    pil = Image.fromarray(cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "AtelierTestCamera"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0)}
    return pil_bytes(pil, "JPEG", exif=exif.tobytes(), quality=92)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming a huge size, with one tiny IDAT: under 1 KB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def valid_grey_png(width: int, height: int) -> bytes:
    """A complete, valid greyscale PNG of any size, compressed row by row (never held whole)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * width
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
