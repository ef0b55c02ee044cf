"""Read an image's format, size, alpha and orientation from its header alone.

Nothing here decodes a pixel. The caller hands over a prefix of the file; when the header does not fit
in it, :class:`NeedMore` says how many bytes to fetch, so a remote object is probed with a ranged read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits

Format = Literal["jpeg", "png", "webp"]
FORMATS: tuple[Format, ...] = ("jpeg", "png", "webp")
EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIRST_READ = 64 * 1024
MAX_HEADER = 2 * 1024 * 1024  # no legitimate header is longer: JPEG APP segments are 64 KB each


class NeedMore(Exception):
    """The header continues past the bytes given; fetch at least ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, before any decode."""

    format: Format
    width: int
    height: int
    has_alpha: bool = False
    orientation: int = 1  # EXIF orientation, 1..8
    bit_depth: int = 8
    size_bytes: int | None = None

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) once the EXIF orientation is applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def sniff(head: bytes) -> str:
    """Name the format of a file from its first bytes (a name, not a verdict)."""
    if not head:
        return "empty file"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM":
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC/HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "ISO media (" + brand.decode("latin-1") + ")"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head[:4] == b"8BPS":
        return "PSD"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL "):
        return "JPEG XL"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if text.startswith(b"<"):
        return "XML"
    try:
        sample = head[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary data"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in sample):
        return "text"
    return "unknown binary data"


def probe(head: bytes, total_size: int | None = None) -> ImageInfo:
    """Parse the header in ``head`` (a prefix of the file); raise ImageRejected or NeedMore."""
    kind = sniff(head[:64])
    parser = {"jpeg": _probe_jpeg, "png": _probe_png, "webp": _probe_webp}.get(kind)
    if parser is not None:
        try:
            info = parser(head)
        except NeedMore:
            if total_size is not None and len(head) >= total_size:
                raise ImageRejected("corrupt", f"the {kind.upper()} file ends inside its header") from None
            raise
    else:
        raise ImageRejected(
            "unsupported_format",
            f"detected {kind}; only JPEG, PNG and WebP images are accepted",
        )
    if info.width <= 0 or info.height <= 0:
        raise ImageRejected("corrupt", f"{kind} header gives a size of {info.width}x{info.height}")
    if total_size is not None:
        info = ImageInfo(**{**info.__dict__, "size_bytes": total_size})
    return info


def check(info: ImageInfo, limits: Limits) -> None:
    """Reject an image whose header breaks a cap."""
    if info.size_bytes is not None and info.size_bytes > limits.max_bytes:
        raise_too_large(info.size_bytes, limits)
    if info.pixels > limits.max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"{info.width}x{info.height} is {info.pixels / 1e6:.1f} MP, over the "
            f"{limits.max_pixels / 1e6:g} MP limit; downsize the image and try again",
        )
    if info.width > limits.max_side or info.height > limits.max_side:
        raise ImageRejected(
            "too_many_pixels",
            f"{info.width}x{info.height} has a side over the {limits.max_side} px limit; "
            "downsize the image and try again",
        )


def raise_too_large(size: int, limits: Limits) -> None:
    """Reject a file over the byte cap."""
    raise ImageRejected(
        "too_large_bytes",
        f"the file is {size / 2**20:.1f} MiB, over the {limits.max_bytes / 2**20:g} MiB limit",
    )


def probe_reader(read: Callable[[int], bytes], size: int, limits: Limits) -> ImageInfo:
    """Probe through ``read(n)`` (the first n bytes), growing the read only as the header needs."""
    if size > limits.max_bytes:
        raise_too_large(size, limits)
    want = min(FIRST_READ, size)
    while True:
        head = read(want)
        try:
            info = probe(head, size)
        except NeedMore as more:
            if want >= size:
                raise ImageRejected("corrupt", "the file ends inside its header") from None
            if more.size > MAX_HEADER:
                raise ImageRejected(
                    "corrupt", f"no image size in the first {MAX_HEADER // 1024} KB of the header"
                ) from None
            want = min(size, max(more.size, want * 4), MAX_HEADER)
            continue
        check(info, limits)
        return info


# --- JPEG -----------------------------------------------------------------------------------------

# start-of-frame markers (SOF0-SOF15 less DHT, JPG and DAC)
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _probe_jpeg(data: bytes) -> ImageInfo:
    pos = 2
    orientation = 1
    n = len(data)
    while True:
        if pos >= n:
            raise NeedMore(n * 2)
        if data[pos] != 0xFF:
            # libjpeg skips stray bytes before a marker with a warning (a segment length one short,
            # padding between segments); the whole-file read in atelier.imaging.container logs them
            pos = data.find(b"\xff", pos)
            if pos < 0:
                raise NeedMore(n * 2)
        # markers may be preceded by any number of 0xFF fill bytes
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise NeedMore(n * 2)
        marker = data[pos]
        pos += 1
        if marker == 0x00:
            continue  # an escaped 0xFF outside a scan is stray data too
        if marker == 0xD8:
            raise ImageRejected("corrupt", "JPEG with a second start-of-image marker in its header")
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # stand-alone markers
        if marker == 0xD9:
            raise ImageRejected("corrupt", "JPEG ends before any frame header")
        if marker == 0xDA:
            raise ImageRejected("corrupt", "JPEG scan starts before any frame header")
        if pos + 2 > n:
            raise NeedMore(pos + 2)
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ImageRejected("corrupt", f"JPEG segment of length {length} at byte {pos}")
        end = pos + length
        if marker in SOF_MARKERS:
            if pos + 8 > n:
                raise NeedMore(pos + 8)
            precision, height, width, components = struct.unpack(">BHHB", data[pos + 2 : pos + 8])
            if components not in (1, 3, 4):
                raise ImageRejected("corrupt", f"JPEG with {components} colour components")
            if height == 0:
                raise ImageRejected("unsupported_format", "JPEG whose height is set by a DNL marker")
            return ImageInfo("jpeg", width, height, False, orientation, precision)
        if marker == 0xE1:
            if end > n:
                raise NeedMore(end)
            orientation = exif_orientation(data[pos + 2 : end], jpeg_app1=True) or orientation
        pos = end


# --- PNG ------------------------------------------------------------------------------------------


def _probe_png(data: bytes) -> ImageInfo:
    if len(data) < 33:
        raise NeedMore(33)
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise ImageRejected("corrupt", "PNG does not start with an IHDR chunk")
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    if depth not in (1, 2, 4, 8, 16) or color_type not in (0, 2, 3, 4, 6):
        raise ImageRejected("corrupt", f"PNG with bit depth {depth} and colour type {color_type}")
    has_alpha = color_type in (4, 6)
    orientation = 1
    frames: int | None = None  # acTL's frame count, for an APNG
    frame_before_idat = False
    pos = 33
    # tRNS, acTL and usually eXIf come before the image data; stop at the first IDAT (an eXIf after
    # it is found by the whole-file read in atelier.imaging.container)
    while True:
        if pos + 8 > len(data):
            raise NeedMore(pos + 8)
        clen, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if ctype == b"IDAT" or ctype == b"IEND":
            break
        end = pos + 12 + clen
        if clen > MAX_HEADER:
            raise ImageRejected("corrupt", f"PNG {ctype!r} chunk of {clen} bytes before the image data")
        if ctype == b"tRNS":
            has_alpha = True
        elif ctype == b"acTL":
            if frames is not None:
                raise ImageRejected("corrupt", "the PNG has a second animation control chunk (acTL)")
            if pos + 12 > len(data):
                raise NeedMore(pos + 12)
            (frames,) = struct.unpack(">I", data[pos + 8 : pos + 12])
        elif ctype == b"fcTL":
            frame_before_idat = True
        elif ctype == b"eXIf":
            if end > len(data):
                raise NeedMore(end)
            orientation = exif_orientation(data[pos + 8 : pos + 8 + clen]) or 1
        pos = end
    # An APNG of one frame that is the image data itself is a still image; otherwise the default image
    # (IDAT) is one more frame than acTL counts, as Pillow reads it.
    if frames is not None and frames + (0 if frame_before_idat else 1) > 1:
        raise ImageRejected("unsupported_format", "detected animated PNG (APNG); send a still image")
    return ImageInfo("png", width, height, has_alpha, orientation, depth)


# --- WebP -----------------------------------------------------------------------------------------


def _probe_webp(data: bytes) -> ImageInfo:
    if len(data) < 25:  # a lossless (VP8L) header ends at byte 25; the others at 30
        raise NeedMore(30)
    fourcc = data[12:16]
    payload = data[20:]
    if fourcc != b"VP8L" and len(data) < 30:
        raise NeedMore(30)
    if fourcc == b"VP8 ":
        if payload[3:6] != b"\x9d\x01\x2a":
            raise ImageRejected("corrupt", "WebP VP8 frame without its start code")
        w, h = struct.unpack("<HH", payload[6:10])
        return ImageInfo("webp", w & 0x3FFF, h & 0x3FFF)
    if fourcc == b"VP8L":
        if payload[0] != 0x2F:
            raise ImageRejected("corrupt", "WebP lossless stream without its signature")
        (bits,) = struct.unpack("<I", payload[1:5])
        w = (bits & 0x3FFF) + 1
        h = ((bits >> 14) & 0x3FFF) + 1
        alpha = bool((bits >> 28) & 1)
        return ImageInfo("webp", w, h, alpha)
    if fourcc == b"VP8X":
        flags = payload[0]
        w = int.from_bytes(payload[4:7], "little") + 1
        h = int.from_bytes(payload[7:10], "little") + 1
        if flags & 0x02:
            raise ImageRejected("unsupported_format", "detected animated WebP; send a still image")
        # The EXIF chunk (orientation) comes after the image data, where libwebpmux and Pillow write
        # it: the whole-file read in atelier.imaging.container finds it, so the header read stays short.
        return ImageInfo("webp", w, h, bool(flags & 0x10))
    raise ImageRejected("corrupt", f"WebP with unknown first chunk {fourcc!r}")


# --- EXIF -----------------------------------------------------------------------------------------


def exif_orientation(block: bytes, jpeg_app1: bool = False) -> int | None:
    """The Orientation tag (0x0112) of IFD0, or None; malformed EXIF is ignored, never fatal."""
    if jpeg_app1:
        if not block.startswith(b"Exif\x00\x00"):
            return None
        block = block[6:]
    elif block.startswith(b"Exif\x00\x00"):
        block = block[6:]
    if len(block) < 8:
        return None
    order = block[:2]
    if order == b"II":
        end = "<"
    elif order == b"MM":
        end = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack(end + "I", block[4:8])
        (count,) = struct.unpack(end + "H", block[ifd : ifd + 2])
        for i in range(min(count, 512)):
            entry = block[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
            tag, typ, _n = struct.unpack(end + "HHI", entry[:8])
            if tag == 0x0112 and typ == 3:
                (value,) = struct.unpack(end + "H", entry[8:10])
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None
