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


# --- files built chunk by chunk, for the decoder's fidelity tests -----------------------------------


def exif_block(orientation: int, big_endian: bool = False) -> bytes:
    """A bare TIFF-structured EXIF block (no "Exif" prefix) whose IFD0 holds just the orientation."""
    e = ">" if big_endian else "<"
    head = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    entry = struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    return head + struct.pack(e + "H", 1) + entry + struct.pack(e + "I", 0)


def png_from_rows(
    width: int,
    height: int,
    rows: bytes,
    depth: int = 8,
    colour: int = 0,
    before: tuple[bytes, ...] = (),
    after: tuple[bytes, ...] = (),
    idat: bytes | None = None,
) -> bytes:
    """A PNG of the given raw rows (each already led by its filter byte), with extra chunks around IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = zlib.compress(rows, 9) if idat is None else idat
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + b"".join(before)
        + _chunk(b"IDAT", data)
        + b"".join(after)
        + _chunk(b"IEND", b"")
    )


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return _chunk(kind, data)


def raw_profile_exif(orientation: int, compressed: bool) -> bytes:
    """ImageMagick's "Raw profile type exif" text chunk (zTXt when compressed) carrying an orientation."""
    blob = b"Exif\x00\x00" + exif_block(orientation)
    hexed = blob.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    text = f"\nexif\n{len(blob):8d}\n{lines}\n".encode("latin-1")
    key = b"Raw profile type exif\x00"
    if compressed:
        return _chunk(b"zTXt", key + b"\x00" + zlib.compress(text))
    return _chunk(b"tEXt", key + text)


def jpeg_with_thumbnail(img: np.ndarray, quality: int = 90) -> bytes:
    """A camera-style JPEG: an APP1 EXIF block carrying a complete JPEG thumbnail (its own SOS and EOI)."""
    thumb = jpeg(cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA), 80)
    # IFD0: orientation 1, then IFD1 with JPEGInterchangeFormat(Length) pointing at the thumbnail
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 1, 0)
    ifd1_at = 8 + len(ifd0) + 4
    ifd1 = struct.pack("<H", 2)
    thumb_at = ifd1_at + len(ifd1) + 2 * 12 + 4
    ifd1 += struct.pack("<HHII", 0x0201, 4, 1, thumb_at) + struct.pack("<HHII", 0x0202, 4, 1, len(thumb))
    tiff = b"II" + struct.pack("<HI", 42, 8) + ifd0 + struct.pack("<I", ifd1_at) + ifd1 + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff + thumb
    main = jpeg(img, quality)
    return main[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + main[2:]


def vp8l_tiny(width: int = 100, height: int = 100) -> bytes:
    """The smallest lossless WebP: one colour, every prefix code a single 1-bit symbol: 28 bytes."""
    bits: list[int] = []

    def put(value: int, count: int) -> None:
        bits.extend((value >> i) & 1 for i in range(count))

    put(width - 1, 14)
    put(height - 1, 14)
    put(0, 1)  # alpha hint
    put(0, 3)  # version
    put(0, 1)  # no transform
    put(0, 1)  # no colour cache
    put(0, 1)  # no meta prefix codes
    for _ in range(5):  # green, red, blue, alpha, distance: a simple code of one 1-bit symbol (0)
        put(1, 1)
        put(0, 1)
        put(0, 1)
        put(0, 1)
    while len(bits) % 8:
        bits.append(0)
    packed = bytes(sum(bit << i for i, bit in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
    stream = b"\x2f" + packed
    if len(stream) % 2:
        stream += b"\x00"
    chunk_ = b"VP8L" + struct.pack("<I", len(stream)) + stream
    return b"RIFF" + struct.pack("<I", 4 + len(chunk_)) + b"WEBP" + chunk_


def png_interlaced(img: np.ndarray) -> bytes:
    """An 8-bit RGB PNG interlaced with Adam7 (neither Pillow nor OpenCV writes one), every row filter 0."""
    from atelier.imaging.container import png_passes

    h, w = img.shape[:2]
    rgb = img[:, :, ::-1]
    raw = b"".join(
        b"\x00" + row.tobytes()
        for x0, y0, dx, dy, *_ in png_passes(w, h, True)
        for row in rgb[y0::dy, x0::dx]
    )
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )
