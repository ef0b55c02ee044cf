"""Read a whole file's container (JPEG markers, PNG chunks, RIFF chunks) before any pixel is decoded.

The probe reads the header alone; this reads the rest of the structure (lengths, markers and checksums,
never pixels) to say what the decoder cannot be trusted to say:

- where the file is cut short or broken (a JPEG cut inside its scan, a PNG without its IEND, a chunk that
  fails its CRC, two frame headers), so a damaged file is refused rather than rendered half black;
- what only the end of the file holds (the EXIF of a WebP, written after the image data; a PNG's eXIf
  after IDAT or ImageMagick's "Raw profile type exif" text);
- how much work the image data asks for (a JPEG's scans, a PNG's inflated bytes), so a small file that
  would cost minutes is refused as ``too_expensive`` before the decoder sees it.

What libjpeg and libpng treat as harmless and costs the picture nothing (stray bytes between JPEG
segments, compressed data past the last row) comes back as a warning and the image renders.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from atelier.domain.errors import ImageRejected
from atelier.domain.limits import MB, Limits
from atelier.imaging.probe import SOF_MARKERS, ImageInfo, exif_orientation

INFLATE_STEP = 1 * MB  # the inflated bytes held at once while the PNG image data is measured
RAW_EXIF_KEYS = (b"Raw profile type exif", b"Raw profile type APP1")
MAX_TEXT_CHUNK = 1 * MB  # a compressed text chunk may inflate to this much (Pillow's own cap)


@dataclass(frozen=True)
class Container:
    """What the whole file says beside its header."""

    data: bytes  # the bytes for the decoder: the file, less stray bytes libjpeg skips anyway
    orientation: int  # EXIF orientation, wherever in the file the EXIF is
    warnings: tuple[str, ...] = ()
    grey_key: int | None = None  # a grey PNG's transparent value (tRNS), in the PNG's own bit depth
    scans: int = 0  # a JPEG's scans
    palette: bytes = b""  # a PNG's PLTE (RGB triples)
    idat: tuple[tuple[int, int], ...] = ()  # [start, end) of each PNG IDAT chunk's data, in order


class Budget:
    """The time one image may take to read and decode: ``decode_ms_per_mp`` per megapixel, 1 MP at least."""

    def __init__(self, info: ImageInfo, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.megapixels = info.pixels / 1e6
        self.seconds = limits.decode_ms_per_mp * max(1.0, self.megapixels) / 1000.0
        self.clock = clock
        self.deadline = clock() + self.seconds

    def check(self, doing: str) -> None:
        """Refuse the image (``too_expensive``) once its time is spent."""
        if self.clock() > self.deadline:
            raise ImageRejected(
                "too_expensive",
                f"{doing} took over {self.seconds:g} s, the limit for a {self.megapixels:.1f} MP image; "
                "re-save the photo with a standard encoder and try again",
            )


def read(data: bytes, info: ImageInfo, limits: Limits, budget: Budget) -> Container:
    """Walk the whole of ``data`` (a file ``info`` was probed from); raise ImageRejected if it is broken."""
    if info.format == "jpeg":
        return _jpeg(data, limits, budget)
    if info.format == "png":
        return _png(data, info, limits, budget)
    return _webp(data, info)


def _truncated(kind: str, where: str) -> ImageRejected:
    return ImageRejected("corrupt", f"the {kind} is truncated: it ends {where}")


# --- JPEG -----------------------------------------------------------------------------------------

# Inside entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; anything
# else after a run of 0xFF is the marker that ends the scan.
_SCAN_END = re.compile(rb"\xff+[\x01-\xcf\xd8-\xfe]")


def _jpeg(data: bytes, limits: Limits, budget: Budget) -> Container:
    n = len(data)
    pos = 2
    frame = False
    scans = 0
    orientation = 1
    stray: list[tuple[int, int]] = []  # [start, end) of bytes libjpeg skips before a marker
    warnings: list[str] = []
    while True:
        if pos >= n:
            raise _truncated("JPEG", "before its end-of-image marker")
        if data[pos] != 0xFF:
            found = data.find(b"\xff", pos)
            if found < 0:
                raise _truncated("JPEG", "in stray bytes after a segment")
            stray.append((pos, found))
            warnings.append(f"{found - pos} stray byte(s) at byte {pos} before a JPEG marker, skipped")
            pos = found
        start = pos
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise _truncated("JPEG", "inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0x00:  # an escaped 0xFF outside a scan: stray data as well
            stray.append((start, pos))
            warnings.append(f"stray bytes FF 00 at byte {start} between JPEG segments, skipped")
            continue
        if marker == 0xD8:
            raise ImageRejected("corrupt", f"the JPEG has a second start-of-image marker at byte {start}")
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # stand-alone markers; libjpeg ignores a restart marker outside a scan
        if marker == 0xD9:
            if scans == 0:
                raise ImageRejected("corrupt", "the JPEG ends before any image data")
            break  # what follows the end of image (a phone's motion-photo video, MPF images) is not read
        if pos + 2 > n:
            raise _truncated("JPEG", f"inside the marker segment at byte {start}")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ImageRejected("corrupt", f"the JPEG segment at byte {start} has a length of {length}")
        end = pos + length
        if end > n:
            raise _truncated("JPEG", f"inside the marker segment at byte {start}")
        if marker in SOF_MARKERS:
            if frame:
                raise ImageRejected("corrupt", f"the JPEG has a second frame header at byte {start}")
            frame = True
        elif marker == 0xE1 and scans == 0:
            orientation = exif_orientation(data[pos + 2 : end], jpeg_app1=True) or orientation
        elif marker == 0xDA:
            if not frame:
                raise ImageRejected("corrupt", "the JPEG's image data starts before its frame header")
            scans += 1
            if scans > limits.max_scans:
                raise ImageRejected(
                    "too_expensive",
                    f"the JPEG has more than {limits.max_scans} scans (encoders write 10 to 20); each one "
                    "makes the decoder pass over the whole image again. Re-save it and try again",
                )
            found_end = _SCAN_END.search(data, end)
            if found_end is None:
                raise _truncated("JPEG", "inside its image data, before the end-of-image marker")
            pos = found_end.start()
            budget.check("reading the JPEG's structure")
            continue
        pos = end
    if stray:
        kept, last = [], 0
        for a, b in stray:
            kept.append(data[last:a])
            last = b
        kept.append(data[last:])
        data = b"".join(kept)
    return Container(data, orientation, tuple(warnings), scans=scans)


# --- PNG ------------------------------------------------------------------------------------------

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel of each colour type
# Adam7: (first column, first row, column step, row step) of each pass
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_passes(width: int, height: int, interlaced: bool) -> list[tuple[int, int, int, int, int, int]]:
    """(x0, y0, dx, dy, columns, rows) of each pass that holds pixels; one pass when not interlaced."""
    if not interlaced:
        return [(0, 0, 1, 1, width, height)]
    out = []
    for x0, y0, dx, dy in ADAM7:
        cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if cols > 0 and rows > 0:
            out.append((x0, y0, dx, dy, cols, rows))
    return out


def png_row_bytes(columns: int, bits_per_pixel: int) -> int:
    """Bytes of one filtered row of ``columns`` pixels, without its filter-type byte."""
    return (columns * bits_per_pixel + 7) // 8


def png_header(data: bytes) -> tuple[int, int, int, int, bool]:
    """(width, height, bit depth, colour type, interlaced) from a PNG's IHDR."""
    width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace == 1


def png_raw_size(data: bytes) -> int:
    """The bytes a PNG's image data must inflate to: every row of every pass, with its filter byte."""
    width, height, depth, colour, interlaced = png_header(data)
    bits = depth * CHANNELS[colour]
    passes = png_passes(width, height, interlaced)
    return sum(rows * (1 + png_row_bytes(cols, bits)) for *_, cols, rows in passes)


def _png(data: bytes, info: ImageInfo, limits: Limits, budget: Budget) -> Container:
    n = len(data)
    view = memoryview(data)
    colour = png_header(data)[3]
    pos = 8
    idat: list[tuple[int, int]] = []
    after_idat = False
    orientation: int | None = None
    raw_orientation: int | None = None
    grey_key: int | None = None
    palette = b""
    warnings: list[str] = []
    chunks = 0
    while True:
        if pos + 8 > n:
            raise _truncated("PNG", "before its IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        name = ctype.decode("latin-1")
        if length > 0x7FFFFFFF:
            raise ImageRejected("corrupt", f"the PNG chunk at byte {pos} has a length of {length}")
        body, end = pos + 8, pos + 8 + length
        if end + 4 > n:
            raise _truncated("PNG", f"inside its {name!r} chunk at byte {pos}")
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(view[pos + 4 : end]) != crc:
            # libpng stops at a critical chunk and drops an ancillary one, but a dropped tRNS, acTL or
            # eXIf changes the picture (opaque, a still, the wrong way up): both are refused, as Pillow does
            raise ImageRejected("corrupt", f"the PNG's {name!r} chunk at byte {pos} fails its checksum")
        chunks += 1
        if chunks % 4096 == 0:
            budget.check("reading the PNG's chunks")
        if ctype == b"IHDR" and pos != 8:
            raise ImageRejected("corrupt", f"the PNG has a second IHDR chunk at byte {pos}")
        if ctype == b"IDAT":
            if after_idat:
                warnings.append(f"the PNG's IDAT chunk at byte {pos} comes after other chunks; ignored")
            else:
                idat.append((body, end))
        elif idat:
            after_idat = True
        if ctype == b"IEND":
            break
        if ctype == b"eXIf":
            orientation = exif_orientation(data[body:end]) or orientation
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            raw_orientation = _raw_profile_orientation(ctype, data[body:end]) or raw_orientation
        elif ctype == b"tRNS" and not idat:
            grey_key = _trns(colour, data[body:end], palette, warnings)
        elif ctype == b"PLTE" and not idat:
            if colour in (0, 4):
                raise ImageRejected("corrupt", "the PNG is grey but carries a palette (PLTE)")
            if length % 3 or not 0 < length <= 768:
                raise ImageRejected("corrupt", f"the PNG's palette has {length} bytes")
            palette = data[body:end]
        pos = end + 4
    if not idat:
        raise ImageRejected("corrupt", "the PNG has no image data (IDAT)")
    if colour == 3 and not palette:
        raise ImageRejected("corrupt", "the PNG is a palette image without its palette (PLTE)")
    warnings += _inflate_check(view, idat, png_raw_size(data), limits, budget)
    orientation = orientation or raw_orientation or info.orientation
    return Container(data, orientation, tuple(warnings), grey_key, palette=palette, idat=tuple(idat))


def _trns(colour: int, body: bytes, palette: bytes, warnings: list[str]) -> int | None:
    """A grey PNG's transparent value; the chunk checked against the colour type, as libpng does."""
    expected = {0: 2, 2: 6}.get(colour)
    if colour in (4, 6):  # the image has an alpha channel of its own: libpng ignores the chunk
        warnings.append("the PNG has an alpha channel and a tRNS chunk; tRNS ignored")
        return None
    if colour == 3:
        if not palette or len(body) > len(palette) // 3:
            raise ImageRejected("corrupt", "the PNG's tRNS chunk does not fit its palette")
        return None
    if len(body) != expected:
        raise ImageRejected("corrupt", f"the PNG's tRNS chunk has {len(body)} bytes where {expected} belong")
    return struct.unpack(">H", body)[0] if colour == 0 else None


def _inflate_check(
    view: memoryview, idat: list[tuple[int, int]], needed: int, limits: Limits, budget: Budget
) -> list[str]:
    """Inflate the image data once, keeping none of it: it must give every row and little more."""
    inflater = zlib.decompressobj()
    produced = 0
    cap = needed + limits.max_extra_inflate
    left_over = 0
    try:
        for i, (a, b) in enumerate(idat):
            if inflater.eof:
                left_over += sum(e - s for s, e in idat[i:])
                break
            pending: bytes | memoryview = view[a:b]
            while pending and not inflater.eof:
                produced += len(inflater.decompress(pending, INFLATE_STEP))
                pending = inflater.unconsumed_tail
                if produced > cap:
                    raise ImageRejected(
                        "too_expensive",
                        f"the PNG's image data inflates past {cap / MB:.0f} MiB where its rows need "
                        f"{needed / MB:.1f} MiB; it is built to make the decoder work, not a photo",
                    )
                budget.check("inflating the PNG's image data")
        produced += len(inflater.flush())
    except zlib.error as exc:
        raise ImageRejected("corrupt", f"the PNG's image data is damaged ({exc})") from None
    if produced < needed:
        raise ImageRejected(
            "corrupt", f"the PNG's image data ends early: {produced} of the {needed} bytes its rows need"
        )
    warnings = []
    if not inflater.eof:
        warnings.append("the PNG's compressed image data does not end; every row is there")
    extra = produced - needed + len(inflater.unused_data) + left_over
    if extra:
        warnings.append(f"the PNG's image data carries {extra} byte(s) past its last row; ignored")
    return warnings


def _raw_profile_orientation(ctype: bytes, body: bytes) -> int | None:
    """The orientation in ImageMagick's "Raw profile type exif" text: a newline, a name, a length, hex."""
    keyword, sep, rest = body.partition(b"\x00")
    if not sep or keyword not in RAW_EXIF_KEYS:
        return None
    try:
        if ctype == b"zTXt":
            text = _inflate_text(rest[1:])
        elif ctype == b"iTXt":
            compressed, _method = rest[0], rest[1]
            _lang, _, rest = rest[2:].partition(b"\x00")
            _translated, _, rest = rest.partition(b"\x00")
            text = _inflate_text(rest) if compressed else rest
        else:
            text = rest
        lines = text.decode("latin-1").split("\n")
        blob = bytes.fromhex("".join(lines[3:]))
    except (ValueError, IndexError, zlib.error):
        return None
    return exif_orientation(blob)


def _inflate_text(compressed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(compressed, MAX_TEXT_CHUNK)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk over the cap")
    return text


# --- WebP -----------------------------------------------------------------------------------------


def _webp(data: bytes, info: ImageInfo) -> Container:
    n = len(data)
    (riff,) = struct.unpack("<I", data[4:8])
    total = 8 + riff
    if total > n:
        raise _truncated("WebP", f"at byte {n} where its RIFF header says {total}")
    orientation = info.orientation
    extended = data[12:16] == b"VP8X"
    image_end = 0  # where the image chunk ends: the decoder is given the file up to there
    alpha = False
    pos = 12
    while pos < total:
        if pos + 8 > total:
            raise _truncated("WebP", f"inside a chunk header at byte {pos}")
        fourcc = data[pos : pos + 4]
        name = fourcc.decode("latin-1")
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + length
        if end + (length & 1) > total:
            raise _truncated("WebP", f"inside its {name!r} chunk at byte {pos}")
        if image_end and not extended:
            pass  # a simple-format file is its image chunk; what follows is walked, never read
        elif fourcc == b"VP8X" and pos != 12:
            raise ImageRejected("corrupt", f"the WebP has a second VP8X chunk at byte {pos}")
        elif fourcc in (b"VP8 ", b"VP8L"):
            if image_end:
                raise ImageRejected("corrupt", f"the WebP has a second image chunk at byte {pos}")
            image_end = end + (length & 1)
        elif fourcc == b"ALPH" and (image_end or alpha):
            raise ImageRejected("corrupt", f"the WebP's alpha chunk (ALPH) at byte {pos} is out of place")
        elif fourcc == b"EXIF":
            orientation = exif_orientation(data[pos + 8 : end]) or orientation
        alpha = alpha or fourcc == b"ALPH"
        pos = end + (length & 1)
    if not image_end:
        raise ImageRejected("corrupt", "the WebP has no image chunk (VP8 or VP8L)")
    if image_end < total:  # metadata after the image (EXIF, XMP) is not the decoder's to read
        data = data[:4] + struct.pack("<I", image_end - 8) + data[8:image_end]
    return Container(data, orientation)
