"""Differential fuzz: Atelier's decoder against Pillow, libjpeg (simplejpeg) and libpng (OpenCV).

Valid JPEG, PNG and WebP files made here are mutated along their structure: cut at every segment or
chunk boundary and inside, bits flipped in headers and in data, chunks moved, lengths made wrong, frame
headers duplicated, EXIF put where it does not belong, stray bytes put between JPEG segments. Every
mutant is decoded by Atelier and by the references, and three rules are checked:

1. Atelier raises nothing but ImageRejected.
2. Atelier renders nothing that Pillow refuses (Pillow raising on open or load, with truncated images
   not loaded).
3. Atelier refuses nothing that Pillow, and libjpeg for a JPEG or libpng for a PNG, read without an
   error or a warning, unless the refusal is a deliberate difference (``DELIBERATE``).

libjpeg is simplejpeg in strict mode (any libjpeg warning raises); libpng is OpenCV's decoder, with what
libpng writes to file descriptor 2 read back. A Python warning from Pillow (a damaged EXIF block, say)
makes its read not clean without making it a refusal.

A reported mutant is rebuilt with ``mutant(seed_name, description)``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import random
import re
import struct
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageFile

from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits
from atelier.imaging.decode import decode
from atelier.imaging.probe import FORMATS, sniff
from tests import imaging

BUDGET_S = 200.0  # the loop stops here, well inside pytest's 300 s timeout; a full run takes far less
LIMITS = Limits()
HEADER_HITS = 3000  # one-byte changes per seed in its headers (and in its metadata segments or chunks)
DATA_HITS = 1500  # one-byte changes per seed in its image data

Mutant = tuple[str, bytes]  # (description, bytes)


# --- seeds: small valid files, encoded here ---------------------------------------------------------


def _bgr() -> np.ndarray:
    return imaging.photo(96, 72, seed=7)


def _bgra() -> np.ndarray:
    img = cv2.cvtColor(_bgr(), cv2.COLOR_BGR2BGRA)
    img[:, :, 3] = np.linspace(0, 255, img.shape[1], dtype=np.uint8)[None, :]
    return img


def _grey() -> np.ndarray:
    return cv2.cvtColor(_bgr(), cv2.COLOR_BGR2GRAY)


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "DifferentialCamera"
    return exif.tobytes()


def _jpeg_restart() -> bytes:
    ok, buf = cv2.imencode(".jpg", _bgr(), [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_RST_INTERVAL, 4])
    assert ok
    return buf.tobytes()


def _png_split_idat() -> bytes:
    """An RGB PNG whose image data is in three IDAT chunks."""
    d = imaging.png(_bgr())
    parts = png_parts(d)
    idat = next(p for p in parts if p.name == "IDAT")
    body = d[idat.start + 8 : idat.end - 4]
    third = len(body) // 3
    pieces = (body[:third], body[third : 2 * third], body[2 * third :])
    return d[: idat.start] + b"".join(imaging.chunk(b"IDAT", p) for p in pieces) + d[idat.end :]


def _apng() -> bytes:
    frames = [_pil(_bgr()), _pil(cv2.flip(_bgr(), 1))]
    return imaging.pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])


def _animated_webp() -> bytes:
    frames = [_pil(_bgr()), _pil(cv2.flip(_bgr(), 1))]
    return imaging.pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], quality=80)


SEEDS: dict[str, Callable[[], bytes]] = {
    "jpeg-baseline": lambda: imaging.jpeg(_bgr(), 85),
    "jpeg-progressive": lambda: imaging.pil_bytes(_pil(_bgr()), "JPEG", progressive=True, quality=85),
    "jpeg-exif": lambda: imaging.with_orientation(_bgr(), 6),
    "jpeg-thumbnail": lambda: imaging.jpeg_with_thumbnail(_bgr(), 85),
    "jpeg-grey": lambda: imaging.jpeg(_grey(), 85),
    "jpeg-restart": _jpeg_restart,
    "png-rgb": lambda: imaging.png(_bgr()),
    "png-rgba": lambda: imaging.png(_bgra()),
    "png-16bit": lambda: imaging.png(_bgr().astype(np.uint16) * 257),
    "png-palette": lambda: imaging.pil_bytes(
        _pil(_bgr()).convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG", transparency=0
    ),
    "png-grey": lambda: imaging.png(_grey()),
    "png-grey-trns": lambda: imaging.pil_bytes(Image.fromarray(_grey()), "PNG", transparency=128),
    "png-optimized-exif": lambda: imaging.pil_bytes(_pil(_bgr()), "PNG", optimize=True, exif=_exif(6)),
    "png-interlaced": lambda: imaging.png_interlaced(_bgr()),
    "png-split-idat": _png_split_idat,
    "png-apng": _apng,
    "webp-lossy": lambda: imaging.webp(_bgr(), 80),
    "webp-lossless": lambda: imaging.webp(_bgr(), 101),
    "webp-lossy-alpha": lambda: imaging.webp(_bgra(), 80),
    "webp-lossless-alpha": lambda: imaging.webp(_bgra(), 101),
    "webp-exif": lambda: imaging.pil_bytes(_pil(_bgr()), "WEBP", quality=80, exif=_exif(6)),
    "webp-animated": _animated_webp,
}


def fmt_of(data: bytes) -> str:
    """The format the magic bytes name, as the references would dispatch it."""
    kind = sniff(data[:64])
    return kind if kind in FORMATS else "other"


# --- structure: where each segment or chunk starts and ends ------------------------------------------


@dataclass(frozen=True)
class Part:
    """One segment or chunk: ``name``, and [start, end) in the file, its CRC or padding included."""

    name: str
    start: int
    end: int


_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_JPEG_NAMES = {0xC0: "SOF0", 0xC2: "SOF2", 0xC4: "DHT", 0xDB: "DQT", 0xDD: "DRI", 0xDA: "SOS", 0xFE: "COM"}


def jpeg_parts(d: bytes) -> list[Part]:
    """SOI, each marker segment, each scan's entropy-coded data ("scan"), EOI."""
    parts = [Part("SOI", 0, 2)]
    pos = 2
    while pos < len(d):
        marker = d[pos + 1]
        if marker == 0xD9:
            parts.append(Part("EOI", pos, pos + 2))
            break
        end = pos + 2 + int.from_bytes(d[pos + 2 : pos + 4], "big")
        name = _JPEG_NAMES.get(marker, f"APP{marker - 0xE0}" if 0xE0 <= marker <= 0xEF else f"FF{marker:02X}")
        parts.append(Part(name, pos, end))
        pos = end
        if marker == 0xDA:
            found = _SCAN_END.search(d, pos)
            assert found is not None
            parts.append(Part("scan", pos, found.start()))
            pos = found.start()
    return parts


def png_parts(d: bytes) -> list[Part]:
    """The signature, then each chunk (length, type, data, CRC)."""
    parts = [Part("signature", 0, 8)]
    pos = 8
    while pos < len(d):
        length, ctype = struct.unpack(">I4s", d[pos : pos + 8])
        parts.append(Part(ctype.decode("latin-1"), pos, pos + 12 + length))
        pos += 12 + length
    return parts


def webp_parts(d: bytes) -> list[Part]:
    """The RIFF header, then each chunk (FourCC, size, payload, padding)."""
    parts = [Part("RIFF", 0, 12)]
    pos = 12
    while pos + 8 <= len(d):
        (size,) = struct.unpack("<I", d[pos + 4 : pos + 8])
        parts.append(Part(d[pos : pos + 4].decode("latin-1").strip(), pos, pos + 8 + size + (size & 1)))
        pos = parts[-1].end
    return parts


def _at(p: Part) -> str:
    return f"{p.name}@{p.start}"


def _crc_fixed(d: bytes, p: Part) -> bytes:
    """``d`` with the CRC of the PNG chunk ``p`` made right for what the chunk now holds."""
    crc = zlib.crc32(d[p.start + 4 : p.end - 4]) & 0xFFFFFFFF
    return d[: p.end - 4] + struct.pack(">I", crc) + d[p.end :]


def _riff_fixed(d: bytes) -> bytes:
    return d[:4] + struct.pack("<I", len(d) - 8) + d[8:]


def _moved(d: bytes, p: Part, to: int) -> bytes:
    """``d`` with part ``p`` cut out and put back at offset ``to`` of the original."""
    piece = d[p.start : p.end]
    if to <= p.start:
        return d[:to] + piece + d[to : p.start] + d[p.end :]
    return d[: p.start] + d[p.end : to] + piece + d[to:]


def _inserted(d: bytes, at: int, piece: bytes) -> bytes:
    return d[:at] + piece + d[at:]


# --- the mutation catalogue -------------------------------------------------------------------------


def _cuts(d: bytes, parts: list[Part], data_names: tuple[str, ...]) -> Iterator[Mutant]:
    """Cut at every part boundary, a few bytes into each part, and ten points inside the data parts."""
    for p in parts:
        yield f"cut at {p.start} (start of {_at(p)})", d[: p.start]
        size = p.end - p.start
        points = {1, 2, 3, 4, 5, 8, size // 2, size - 4, size - 1}
        if p.name in data_names:
            points |= {size * k // 10 for k in range(1, 10)}
        for k in sorted(points):
            if 0 < k < size:
                yield f"cut at {p.start + k} ({k} bytes into {_at(p)})", d[: p.start + k]


def _hits(
    d: bytes, parts: list[Part], count: int, rng: random.Random, where: str, skip: int = 0
) -> Iterator[tuple[str, bytes, Part]]:
    """``count`` one-byte changes in a part drawn at random, past its first ``skip`` bytes: three in four
    flip one bit, the others set the byte to 00, FF or a random value."""
    parts = [p for p in parts if p.end - p.start > skip]
    for _ in range(count):
        p = rng.choice(parts)
        i = rng.randrange(p.start + skip, p.end)
        b = bytearray(d)
        if rng.random() < 0.75:
            bit = rng.randrange(8)
            b[i] ^= 1 << bit
            desc = f"flip bit {bit} of byte {i}"
        else:
            b[i] = rng.choice((0x00, 0xFF, rng.randrange(256)))
            desc = f"set byte {i} to {b[i]:02x}"
        yield f"{desc} ({where}, {_at(p)})", bytes(b), p


def _every_flip(d: bytes, start: int, end: int, where: str) -> Iterator[tuple[str, bytes]]:
    for i in range(start, end):
        for bit in range(8):
            b = bytearray(d)
            b[i] ^= 1 << bit
            yield f"flip bit {bit} of byte {i} ({where})", bytes(b)


def _moves(d: bytes, units: list[Part], lo: int, hi: int) -> Iterator[Mutant]:
    """Each unit moved one place either way, to offset ``lo``, to ``hi`` and to the end of the file."""
    for i, u in enumerate(units):
        targets = {lo: f"to {lo}", hi: f"to {hi}", len(d): "to the end"}
        if i > 0:
            targets[units[i - 1].start] = f"before {_at(units[i - 1])}"
        if i + 1 < len(units):
            targets[units[i + 1].end] = f"after {_at(units[i + 1])}"
        for to, label in sorted(targets.items()):
            if not u.start <= to <= u.end:
                yield f"move {_at(u)} {label}", _moved(d, u, to)


def _app1_exif(orientation: int) -> bytes:
    payload = b"Exif\x00\x00" + imaging.exif_block(orientation)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_mutants(d: bytes, rng: random.Random) -> Iterator[Mutant]:
    parts = jpeg_parts(d)
    first_sos = next(p for p in parts if p.name == "SOS")
    sof = next(p for p in parts if p.name.startswith("SOF"))
    eoi = parts[-1]
    head = [p for p in parts if p.end <= first_sos.end]
    segments = [p for p in parts if p.name not in ("SOI", "EOI", "scan")]
    scans = [p for p in parts if p.name == "scan"]
    yield from _cuts(d, parts, ("scan",))
    for p in scans:  # a well-formed end after a cut: the scan stops early, then EOI
        for k in (1, 2, 3):
            at = p.start + (p.end - p.start) * k // 4
            yield f"cut at {at} ({_at(p)}), EOI appended", d[:at] + b"\xff\xd9"
    for desc, m, _ in _hits(d, head, HEADER_HITS, rng, "header"):
        yield desc, m
    for desc, m, _ in _hits(d, scans, DATA_HITS, rng, "data"):
        yield desc, m
    yield from _every_flip(d, sof.start, sof.start + 10, "SOF")
    # moves: each segment, and each scan with its SOS header, as a unit
    units: list[Part] = []
    for p in parts[1:-1]:
        if p.name == "scan":
            units[-1] = Part("SOS+scan", units[-1].start, p.end)
        else:
            units.append(p)
    yield from _moves(d, units, 2, eoi.start)
    for p in segments:
        (length,) = struct.unpack(">H", d[p.start + 2 : p.start + 4])
        for new in {length - 3, length - 2, length - 1, length + 1, length + 2, length + 3, 0, 1, 2, 0xFFFF}:
            if 0 <= new <= 0xFFFF and new != length:
                m = d[: p.start + 2] + struct.pack(">H", new) + d[p.start + 4 :]
                yield f"length of {_at(p)} {length} -> {new}", m
    sof_bytes = d[sof.start : sof.end]
    yield "SOF duplicated after itself", _inserted(d, sof.end, sof_bytes)
    yield "SOF duplicated before the first SOS", _inserted(d, first_sos.start, sof_bytes)
    yield "SOF duplicated before EOI", _inserted(d, eoi.start, sof_bytes)
    yield "SOI duplicated after SOI", _inserted(d, 2, b"\xff\xd8")
    yield "EOI duplicated after EOI", d + b"\xff\xd9"
    app1 = _app1_exif(3)
    yield "APP1 EXIF (orientation 3) after SOF", _inserted(d, sof.end, app1)
    yield "APP1 EXIF (orientation 3) before the first SOS", _inserted(d, first_sos.start, app1)
    yield "APP1 EXIF (orientation 3) after the first scan", _inserted(d, scans[0].end, app1)
    yield "APP1 EXIF (orientation 3) after EOI", d + app1
    yield "APP1 EXIF (orientation 3) after SOI", _inserted(d, 2, app1)
    yield (
        "APP1 EXIF without its Exif prefix after SOI",
        _inserted(d, 2, b"\xff\xe1" + struct.pack(">H", 2 + 14 + 12 + 4) + imaging.exif_block(3)),
    )
    strays = (b"\x00", b"\x00\x00\x00\x00", b"\x12\x34\x56", b"\xff\x00", b"\xff", b"\xff\xff\xff")
    for p in [*segments, eoi]:
        for stray in strays:
            yield f"bytes {stray.hex()} before {_at(p)}", _inserted(d, p.start, stray)
    for stray in strays:
        yield f"bytes {stray.hex()} after EOI", d + stray


def png_mutants(d: bytes, rng: random.Random) -> Iterator[Mutant]:
    parts = png_parts(d)
    chunks = parts[1:]
    idats = [p for p in chunks if p.name == "IDAT"]
    ihdr, iend = chunks[0], chunks[-1]
    head = [p for p in chunks if p.end <= idats[0].start]
    yield from _cuts(d, parts, ("IDAT",))
    for p in idats:  # a well-formed end after a cut: the chunk closed with its CRC, then IEND
        for k in (1, 2, 3):
            body = d[p.start + 8 : p.start + 8 + (p.end - p.start - 12) * k // 4]
            m = d[: p.start] + imaging.chunk(b"IDAT", body) + _iend()
            yield f"IDAT@{p.start} cut to {len(body)} bytes with its CRC, IEND appended", m
    yield from _zlib_mutants(d, idats)
    for desc, m, p in _hits(d, head, HEADER_HITS, rng, "header", skip=4):
        yield desc + ", CRC fixed", _crc_fixed(m, p)
    for desc, m, _ in _hits(d, head, HEADER_HITS // 10, rng, "header"):
        yield desc, m
    for desc, m, p in _hits(d, idats, DATA_HITS, rng, "data", skip=8):
        yield desc + ", CRC fixed", _crc_fixed(m, p)
    for desc, m, _ in _hits(d, idats, DATA_HITS // 10, rng, "data"):
        yield desc, m
    for desc, m in _every_flip(d, ihdr.start + 8, ihdr.start + 21, "IHDR"):
        yield desc + ", CRC fixed", _crc_fixed(m, ihdr)
    yield from _moves(d, chunks, 8, idats[0].start)
    for p in chunks:
        if p.end < idats[-1].end:
            yield f"move {_at(p)} after the last IDAT", _moved(d, p, idats[-1].end)
        (length,) = struct.unpack(">I", d[p.start : p.start + 4])
        for delta in (-4, -1, 1, 4):
            if length + delta >= 0:
                m = d[: p.start] + struct.pack(">I", length + delta) + d[p.start + 4 :]
                yield f"length of {_at(p)} {length} -> {length + delta}", m
                yield f"length of {_at(p)} {length} -> {length + delta}, CRC fixed", _relength(d, p, delta)
        for new in (0, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
            if new != length:
                m = d[: p.start] + struct.pack(">I", new) + d[p.start + 4 :]
                yield f"length of {_at(p)} {length} -> {new}", m
        yield f"CRC of {_at(p)} zeroed", d[: p.end - 4] + bytes(4) + d[p.end :]
    ihdr_bytes = d[ihdr.start : ihdr.end]
    yield "IHDR duplicated after itself", _inserted(d, ihdr.end, ihdr_bytes)
    yield "IHDR duplicated before IEND", _inserted(d, iend.start, ihdr_bytes)
    yield "IEND duplicated after IHDR", _inserted(d, ihdr.end, _iend())
    for p in chunks[1:-1]:
        if p.name != "IDAT":
            yield f"{_at(p)} duplicated after itself", _inserted(d, p.end, d[p.start : p.end])
    exif = imaging.chunk(b"eXIf", imaging.exif_block(3))
    yield "eXIf (orientation 3) after the last IDAT", _inserted(d, idats[-1].end, exif)
    if len(idats) > 1:
        yield "eXIf (orientation 3) between IDAT chunks", _inserted(d, idats[1].start, exif)
    yield "eXIf (orientation 3) before the first IDAT", _inserted(d, idats[0].start, exif)
    yield "eXIf (orientation 3) after IEND", d + exif
    yield "eXIf (orientation 3) before IHDR", _inserted(d, 8, exif)
    yield (
        "eXIf (orientation 3) with Exif prefix after IHDR",
        _inserted(d, ihdr.end, imaging.chunk(b"eXIf", b"Exif\x00\x00" + imaging.exif_block(3))),
    )
    yield "eXIf (orientation 3) twice after IHDR", _inserted(d, ihdr.end, exif + exif)
    text = imaging.chunk(b"tEXt", b"Comment\x00between")
    yield "IDAT split in two around a tEXt", _split_idat(d, idats[0], text)
    yield "IDAT split in two around an empty IDAT", _split_idat(d, idats[0], imaging.chunk(b"IDAT", b""))
    yield "empty IDAT after the last IDAT", _inserted(d, idats[-1].end, imaging.chunk(b"IDAT", b""))
    for tail in (b"\x00", b"junk after the end", _iend()):
        yield f"{tail[:8].hex()}... after IEND", d + tail


def _zlib_mutants(d: bytes, idats: list[Part]) -> Iterator[Mutant]:
    """The image data's zlib stream made wrong, every chunk's CRC right: one IDAT replaces them all."""
    stream = b"".join(d[p.start + 8 : p.end - 4] for p in idats)
    raw = zlib.decompress(stream)

    def one_idat(new: bytes) -> bytes:
        return d[: idats[0].start] + imaging.chunk(b"IDAT", new) + d[idats[-1].end :]

    yield "zlib Adler-32 flipped", one_idat(stream[:-1] + bytes([stream[-1] ^ 1]))
    yield "zlib Adler-32 left out", one_idat(stream[:-4])
    yield "zlib stream cut 8 bytes before its end", one_idat(stream[:-8])
    yield "8 zero bytes after the zlib stream", one_idat(stream + bytes(8))
    yield "zlib stream of the rows and 100 bytes more", one_idat(zlib.compress(raw + bytes(100), 9))
    yield "zlib stream of the rows less their last byte", one_idat(zlib.compress(raw[:-1], 9))
    yield "zlib stream of the rows less their last row", one_idat(zlib.compress(raw[: len(raw) * 9 // 10], 9))
    yield "zlib stream not finished (sync flush)", one_idat(_unfinished(raw))
    yield "raw deflate without the zlib header", one_idat(zlib.compress(raw, 9)[2:-4])


def _unfinished(raw: bytes) -> bytes:
    comp = zlib.compressobj(9)
    return comp.compress(raw) + comp.flush(zlib.Z_SYNC_FLUSH)


def _iend() -> bytes:
    return imaging.chunk(b"IEND", b"")


def _relength(d: bytes, p: Part, delta: int) -> bytes:
    """The chunk ``p`` given a length ``delta`` off, with a CRC that is right for that length."""
    (length,) = struct.unpack(">I", d[p.start : p.start + 4])
    new = length + delta
    ctype = d[p.start + 4 : p.start + 8]
    tail = d[p.start + 8 :]  # the body, then the old CRC and what follows
    body, after = (tail + bytes(new))[:new], tail[new:]
    crc = struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    return d[: p.start] + struct.pack(">I", new) + ctype + body + crc + after


def _split_idat(d: bytes, p: Part, between: bytes) -> bytes:
    body = d[p.start + 8 : p.end - 4]
    half = len(body) // 2
    both = imaging.chunk(b"IDAT", body[:half]) + between + imaging.chunk(b"IDAT", body[half:])
    return d[: p.start] + both + d[p.end :]


def _webp_chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def webp_mutants(d: bytes, rng: random.Random) -> Iterator[Mutant]:
    parts = webp_parts(d)
    chunks = parts[1:]
    image = [p for p in chunks if p.name in ("VP8", "VP8L", "ALPH", "ANMF")]
    for desc, m in _cuts(d, parts, ("VP8", "VP8L", "ALPH", "ANMF")):
        yield desc, m
        if len(m) >= 12:
            yield desc + ", RIFF size fixed", _riff_fixed(m)
    for p in image:  # a well-formed file after a cut: the chunk and RIFF sizes say the new length
        for k in (1, 2, 3):
            payload = d[p.start + 8 : p.start + 8 + (p.end - p.start - 8) * k // 4]
            m = d[: p.start] + _webp_chunk(d[p.start : p.start + 4], payload) + d[p.end :]
            yield f"{_at(p)} cut to {len(payload)} bytes, sizes fixed", _riff_fixed(m)
    heads = [Part(p.name, p.start, min(p.end, p.start + 18)) for p in parts]
    for desc, m, _ in _hits(d, heads, HEADER_HITS, rng, "header"):
        yield desc, m
    for desc, m, _ in _hits(d, image, DATA_HITS, rng, "data", skip=18):
        yield desc, m
    yield from _every_flip(d, 12, min(len(d), 30), "first chunk header")
    yield from _moves(d, chunks, 12, chunks[-1].start)
    (riff,) = struct.unpack("<I", d[4:8])
    for delta in (-9, -8, -2, -1, 1, 2, 8, 1000):
        yield f"RIFF size {riff} -> {riff + delta}", d[:4] + struct.pack("<I", riff + delta) + d[8:]
    for p in chunks:
        (size,) = struct.unpack("<I", d[p.start + 4 : p.start + 8])
        for new in {size - 2, size - 1, size + 1, size + 2, 0, 0xFFFFFFFF}:
            if 0 <= new <= 0xFFFFFFFF and new != size:
                m = d[: p.start + 4] + struct.pack("<I", new) + d[p.start + 8 :]
                yield f"size of {_at(p)} {size} -> {new}", m
                yield f"size of {_at(p)} {size} -> {new}, RIFF size fixed", _riff_fixed(m)
        yield f"{_at(p)} duplicated after itself", _riff_fixed(_inserted(d, p.end, d[p.start : p.end]))
    exif = _webp_chunk(b"EXIF", imaging.exif_block(3))
    yield "EXIF (orientation 3) appended, RIFF size fixed", _riff_fixed(d + exif)
    yield "EXIF (orientation 3) appended, RIFF size kept", d + exif
    yield "EXIF (orientation 3) first, RIFF size fixed", _riff_fixed(_inserted(d, 12, exif))
    yield (
        "EXIF (orientation 3) before the image data, RIFF size fixed",
        _riff_fixed(_inserted(d, image[0].start, exif)),
    )
    if chunks[0].name == "VP8X":
        flags = d[20]
        for bit in range(8):
            yield f"VP8X flag bit {bit} flipped", d[:20] + bytes([flags ^ (1 << bit)]) + d[21:]
    for tail in (b"\x00", b"junk", _webp_chunk(b"JUNK", b"12345")):
        yield f"{tail.hex()} after the RIFF data", d + tail


MUTATORS: dict[str, Callable[[bytes, random.Random], Iterator[Mutant]]] = {
    "jpeg": jpeg_mutants,
    "png": png_mutants,
    "webp": webp_mutants,
}


def mutants(seed_name: str) -> Iterator[Mutant]:
    """Every mutant of a seed, each once, in a fixed order."""
    d = SEEDS[seed_name]()
    seen = {d}
    for desc, m in MUTATORS[fmt_of(d)](d, random.Random(seed_name)):
        if m not in seen:
            seen.add(m)
            yield desc, m


def mutant(seed_name: str, description: str) -> bytes:
    """Rebuild one mutant from its seed name and description (as a failure message gives them)."""
    return next(m for desc, m in mutants(seed_name) if desc == description)


# --- what each decoder says --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One decoder's verdict: ``read`` (pixels came back), ``clean`` (and it said nothing), its words."""

    read: bool
    clean: bool
    said: str


@dataclass(frozen=True)
class Atelier:
    """Atelier's verdict: ``reason`` is None when it rendered, "crash" when it raised something else."""

    reason: str | None
    said: str


class Stderr:
    """File descriptor 2 sent to a temporary file while a C library writes to it, then given back."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def run(self, call: Callable[[], object]) -> tuple[object, str]:
        self.file.seek(0)
        self.file.truncate()
        saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        try:
            result = call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        self.file.seek(0)
        return result, self.file.read().decode("utf-8", "replace")


def run_atelier(data: bytes, stderr: Stderr) -> Atelier:
    def call() -> Atelier:
        try:
            got = decode(data, LIMITS)
        except ImageRejected as exc:
            return Atelier(exc.reason, exc.message)
        except Exception as exc:
            return Atelier("crash", f"{type(exc).__name__}: {exc}")
        return Atelier(None, "rendered" + "".join(f"; warning: {w}" for w in got.warnings))

    verdict, _ = stderr.run(call)  # OpenCV and libpng write to fd 2; Atelier's verdict is what counts
    assert isinstance(verdict, Atelier)
    return verdict


def run_pillow(data: bytes) -> Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                fmt = im.format
        except Exception as exc:
            said = re.sub(r" at 0x[0-9a-f]+", "", str(exc))  # a BytesIO's address changes from run to run
            return Outcome(False, False, f"{type(exc).__name__}: {said}")
    if caught:
        return Outcome(
            True, False, "read as {}, warning: {}".format(fmt, "; ".join(str(w.message) for w in caught))
        )
    return Outcome(True, True, f"read as {fmt}")


def run_libjpeg(data: bytes) -> Outcome:
    try:
        simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True)
        return Outcome(True, True, "read")
    except ValueError as exc:
        strict = str(exc)
    try:
        simplejpeg.decode_jpeg(data, colorspace="BGR", strict=False)
        return Outcome(True, False, f"read with a warning: {strict}")
    except ValueError as exc:
        return Outcome(False, False, str(exc))


def run_libpng(data: bytes, stderr: Stderr) -> Outcome:
    def call() -> object:
        try:
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            return exc

    img, said = stderr.run(call)
    said = " ".join(line.strip() for line in said.splitlines() if "libpng" in line)
    if isinstance(img, cv2.error) or img is None:
        return Outcome(False, False, said or f"no image: {img}")
    return Outcome(True, not said, said or "read")


def run_native(data: bytes, stderr: Stderr) -> Outcome | None:
    """libjpeg for a JPEG, libpng for a PNG, nothing else."""
    if fmt_of(data) == "jpeg":
        return run_libjpeg(data)
    if fmt_of(data) == "png":
        return run_libpng(data, stderr)
    return None


# --- the rules -----------------------------------------------------------------------------------------

CRASH = "raised something other than ImageRejected"
RENDERED = "rendered a file Pillow refuses"
REFUSED = "refused a file every reference reads cleanly"

NUMBER = re.compile(r"\b([0-9]+|[0-9a-f]{2})\b")  # offsets, sizes and byte values in a description
ONE_BYTE = re.compile(r"flip bit N of byte N|set byte N to N")


def kind(seed: str, desc: str) -> str:
    """What a mutant has in common with others like it: its description less offsets and values."""
    return f"{seed} / {ONE_BYTE.sub('byte N changed', NUMBER.sub('N', desc))}"


# Refusals that differ from the references on purpose: (what it is, does Atelier's verdict match it)
DELIBERATE: tuple[tuple[str, Callable[[Atelier], bool]], ...] = (
    ("over a cap", lambda a: a.reason in ("too_large_bytes", "too_many_pixels", "too_expensive")),
    ("animated", lambda a: a.reason == "unsupported_format" and "animated" in a.said),
    ("not JPEG, PNG or WebP", lambda a: a.reason == "unsupported_format" and a.said.startswith("detected ")),
    # the PNG specification puts IHDR first; libpng reads past an unknown chunk before it, Pillow too
    ("IHDR not first", lambda a: a.reason == "corrupt" and "does not start with an IHDR" in a.said),
)


@functools.cache
def seed_bytes(seed: str) -> bytes:
    return SEEDS[seed]()


def only_reserved_bits_set(seed: str, data: bytes) -> bool:
    """The seed with only its VP8X flags changed, a reserved bit among them: the WebP container spec has
    readers ignore reserved bits (Pillow refuses the file, and reads the other flag changes alone), so
    Atelier renders it, a deliberate difference."""
    original = seed_bytes(seed)
    if len(original) != len(data) or original[12:16] != b"VP8X":
        return False
    changed = set(np.flatnonzero(np.frombuffer(original, np.uint8) != np.frombuffer(data, np.uint8)).tolist())
    return bool(changed) and changed <= {20, 21, 22, 23} and bool(data[20] & 0xC1 or any(data[21:24]))


def excused(atelier: Atelier) -> bool:
    return any(matches(atelier) for _, matches in DELIBERATE)


def judge(
    atelier: Atelier, pillow: Outcome | None, native: Outcome | None, reserved_only: bool
) -> str | None:
    """The rule a verdict breaks, or None; the references are None where a refusal is excused."""
    if atelier.reason == "crash":
        return CRASH
    if atelier.reason is None:
        assert pillow is not None
        return None if pillow.read or reserved_only else RENDERED
    if excused(atelier):
        return None
    assert pillow is not None
    return REFUSED if pillow.clean and (native is None or native.clean) else None


@dataclass(frozen=True)
class Case:
    """One mutant, what each decoder said, and the rule it breaks (None: none)."""

    seed: str
    desc: str
    atelier: Atelier
    pillow: Outcome | None
    native: Outcome | None  # libjpeg for a JPEG, libpng for a PNG
    broken: str | None

    def __str__(self) -> str:
        said = [f"atelier: {self.atelier.reason or 'rendered'}: {self.atelier.said}"]
        said += [f"pillow:  {self.pillow.said}"] if self.pillow else []
        said += (
            [f"{'libjpeg' if self.seed.startswith('jpeg') else 'libpng'}:  {self.native.said}"]
            if self.native
            else []
        )
        return f"{self.seed} / {self.desc}\n" + "\n".join(f"    {line[:300]}" for line in said)


def check(seed: str, desc: str, data: bytes, stderr: Stderr) -> Case:
    atelier = run_atelier(data, stderr)
    if atelier.reason != "crash" and excused(atelier):
        return Case(seed, desc, atelier, None, None, None)
    pillow, native = run_pillow(data), run_native(data, stderr)
    reserved_only = atelier.reason is None and only_reserved_bits_set(seed, data)
    return Case(seed, desc, atelier, pillow, native, judge(atelier, pillow, native, reserved_only))


def _interleaved() -> Iterator[tuple[str, str, bytes]]:
    """Every seed's mutants, one seed after another in turn, so a run cut short still covers every seed."""
    streams = {name: mutants(name) for name in SEEDS}
    while streams:
        for name, stream in list(streams.items()):
            got = next(stream, None)
            if got is None:
                del streams[name]
            else:
                yield name, *got


@dataclass(frozen=True, repr=False)
class Run:
    """Every mutant checked, and a line that says how many of what there were."""

    cases: list[Case]
    summary: str

    def __repr__(self) -> str:
        return f"Run({self.summary})"

    def count(self, rule: str) -> int:
        return sum(1 for c in self.cases if c.broken == rule)

    def report(self, rule: str) -> str:
        """The mutants that break ``rule``: how many of each kind, and the first of each."""
        by_kind: dict[str, list[Case]] = {}
        for c in self.cases:
            if c.broken == rule:
                by_kind.setdefault(kind(c.seed, c.desc), []).append(c)
        biggest = sorted(by_kind.items(), key=lambda item: -len(item[1]))
        return (
            f"Atelier {rule}: {self.count(rule)} of {self.summary}\n"
            "one of each kind (rebuild it with tests.unit.test_differential.mutant(seed, description)):\n"
            + "\n".join(f"[{len(found)} x {name}]\n{found[0]}" for name, found in biggest)
        )


@contextlib.contextmanager
def strict_references() -> Iterator[Stderr]:
    """Pillow refusing truncated files and warning past Atelier's pixel cap; Atelier's log quiet."""
    log = logging.getLogger("atelier")
    level = log.level
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryFile() as tmp:
        patch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
        patch.setattr(Image, "MAX_IMAGE_PIXELS", LIMITS.max_pixels)
        log.setLevel(logging.ERROR)  # a warning per rendered mutant otherwise
        try:
            yield Stderr(tmp)
        finally:
            log.setLevel(level)


@pytest.fixture(scope="module")
def run() -> Run:
    with strict_references() as stderr:
        start = time.monotonic()
        cases: list[Case] = []
        for seed, desc, data in _interleaved():
            if time.monotonic() - start > BUDGET_S:
                warnings.warn(f"time budget spent after {len(cases)} mutants", stacklevel=1)
                break
            cases.append(check(seed, desc, data, stderr))
    per_format = Counter(c.seed.split("-")[0] for c in cases)
    verdicts = Counter(c.atelier.reason or "rendered" for c in cases)
    took = time.monotonic() - start
    summary = f"{len(cases)} mutants in {took:.0f} s: {dict(per_format)}; Atelier: {dict(verdicts)}"
    print("\n" + summary)
    return Run(cases, summary)


def test_every_seed_is_read_cleanly_by_every_decoder() -> None:
    with strict_references() as stderr:
        for name, make in SEEDS.items():
            data = make()
            atelier = run_atelier(data, stderr)
            animated = name in ("png-apng", "webp-animated")
            assert atelier.reason == ("unsupported_format" if animated else None), (name, atelier)
            pillow, native = run_pillow(data), run_native(data, stderr)
            assert pillow.clean and (native is None or native.clean), (name, pillow, native)


@pytest.mark.slow
def test_atelier_raises_nothing_but_image_rejected(run: Run) -> None:
    assert run.count(CRASH) == 0, run.report(CRASH)


@pytest.mark.slow
def test_atelier_renders_nothing_pillow_refuses(run: Run) -> None:
    assert run.count(RENDERED) == 0, run.report(RENDERED)


@pytest.mark.slow
def test_atelier_refuses_nothing_every_reference_reads_cleanly(run: Run) -> None:
    assert run.count(REFUSED) == 0, run.report(REFUSED)
