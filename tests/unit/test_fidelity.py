"""The decoder's fidelity: every real photo decoded right, every broken one refused, on files made here."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from atelier.domain.errors import ImageRejected
from atelier.domain.limits import MB, Limits
from atelier.imaging.decode import decode
from tests import imaging


def rejected(data: bytes, limits: Limits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode(data, limits or Limits())
    return caught.value


def pil_rgb(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


# --- orientation wherever the EXIF is ---------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_webp_exif_after_the_image_data_is_applied(orientation: int) -> None:
    img = imaging.photo(64, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = imaging.pil_bytes(pil_rgb(img), "WEBP", lossless=True, exif=exif.tobytes())
    assert data.find(b"EXIF") > data.find(b"VP8L")  # where libwebpmux and Pillow put it
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB"))
    got = decode(data)
    assert got.info.orientation == orientation
    assert np.array_equal(got.bgr, cv2.cvtColor(np.asarray(expected), cv2.COLOR_RGB2BGR))


def _grey_rows(width: int, height: int) -> bytes:
    return b"".join(b"\x00" + bytes((x * 7 + y) % 256 for x in range(width)) for y in range(height))


@pytest.mark.parametrize("where", ["after IDAT", "raw profile tEXt", "raw profile zTXt"])
def test_png_exif_after_the_image_data_or_in_imagemagick_text_is_applied(where: str) -> None:
    w, h = 24, 16
    chunk = {
        "after IDAT": imaging.chunk(b"eXIf", imaging.exif_block(6, big_endian=True)),
        "raw profile tEXt": imaging.raw_profile_exif(6, compressed=False),
        "raw profile zTXt": imaging.raw_profile_exif(6, compressed=True),
    }[where]
    data = imaging.png_from_rows(w, h, _grey_rows(w, h), after=(chunk,) if where == "after IDAT" else ())
    if where != "after IDAT":
        data = imaging.png_from_rows(w, h, _grey_rows(w, h), before=(chunk,))
    pillow = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert pillow.size == (h, w)  # Pillow applies it: the reference
    got = decode(data)
    assert (got.width, got.height) == (h, w)
    assert np.array_equal(got.bgr[:, :, 0], np.asarray(pillow))


# --- transparency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "key"), [(8, 77), (16, 0x1234), (4, 5), (1, 1)])
def test_grey_png_with_a_trns_key_keeps_its_transparency(depth: int, key: int) -> None:
    w, h = 16, 8
    values = np.arange(w * h).reshape(h, w) % (1 << depth)
    values[2:4, 3:7] = key
    if depth == 16:
        packed = [b"\x00" + v.astype(">u2").tobytes() for v in values]
    elif depth == 8:
        packed = [b"\x00" + v.astype(np.uint8).tobytes() for v in values]
    else:
        per = 8 // depth
        packed = []
        for v in values:
            row = bytearray()
            for i in range(0, w, per):
                byte = 0
                for j, px in enumerate(v[i : i + per]):
                    byte |= int(px) << (8 - depth * (j + 1))
                row.append(byte)
            packed.append(b"\x00" + bytes(row))
    trns = imaging.chunk(b"tRNS", struct.pack(">H", key))
    data = imaging.png_from_rows(w, h, b"".join(packed), depth=depth, before=(trns,))
    got = decode(data)
    assert got.alpha is not None
    assert np.array_equal(got.alpha == 0, values == key)
    if depth in (1, 8):  # Pillow drops the key of 16-bit grey and compares 4-bit keys unscaled
        pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3]
        assert np.array_equal(got.alpha == 0, pillow == 0)


# --- JPEG: truncation, warnings, tolerated oddities -----------------------------------------------


def test_a_truncated_camera_jpeg_with_an_exif_thumbnail_is_corrupt() -> None:
    whole = imaging.jpeg_with_thumbnail(imaging.photo(800, 600))
    assert decode(whole).bgr.shape == (600, 800, 3)
    cut = whole[: len(whole) // 2]
    assert cut.count(b"\xff\xd9") == 1  # the thumbnail's end marker is still there
    refused = rejected(cut)
    assert refused.reason == "corrupt" and "truncated" in refused.message


def test_a_scan_far_shorter_than_its_frame_is_corrupt_with_libjpegs_words() -> None:
    small = bytearray(imaging.jpeg(np.full((8, 8, 3), 128, np.uint8)))
    sof = small.find(b"\xff\xc0")
    small[sof + 5 : sof + 9] = struct.pack(">HH", 7000, 7000)
    refused = rejected(bytes(small))
    assert refused.reason == "corrupt"
    assert "premature end of data" in refused.message


def test_stray_bytes_between_jpeg_segments_are_a_warning_and_the_image_renders() -> None:
    clean = imaging.jpeg(imaging.photo(320, 240))
    sof = clean.find(b"\xff\xc0")
    dirty = clean[:sof] + b"\x00\x11\x22" + clean[sof:]
    got = decode(dirty)
    assert np.array_equal(got.bgr, decode(clean).bgr)
    assert any("stray byte" in w for w in got.warnings)


def test_an_app14_segment_one_byte_short_is_tolerated() -> None:
    clean = imaging.jpeg(imaging.photo(320, 240))
    adobe = b"Adobe" + b"\x00\x64" + b"\x00\x00" + b"\x00\x00" + b"\x01"  # 12 bytes: YCbCr transform
    short = clean[:2] + b"\xff\xee" + struct.pack(">H", len(adobe) + 1) + adobe + clean[2:]
    got = decode(short)
    assert np.array_equal(got.bgr, decode(clean).bgr)
    assert got.warnings


def test_a_harmless_libjpeg_warning_in_the_header_is_logged_and_the_image_renders() -> None:
    clean = imaging.jpeg(imaging.photo(64, 48))
    jfif = clean.find(b"JFIF\x00")
    odd = clean[: jfif + 5] + b"\x02" + clean[jfif + 6 :]  # JFIF 2.01: libjpeg warns, reads on
    got = decode(odd)
    assert np.array_equal(got.bgr, decode(clean).bgr)
    assert got.warnings == ("libjpeg: Warning: unknown JFIF revision number 2.01",)


def test_two_frame_headers_are_corrupt() -> None:
    clean = imaging.jpeg(imaging.photo(64, 48))
    sof = clean.find(b"\xff\xc0")
    (length,) = struct.unpack(">H", clean[sof + 2 : sof + 4])
    segment = clean[sof : sof + 2 + length]
    refused = rejected(clean[:sof] + segment + clean[sof:])
    assert refused.reason == "corrupt" and "second frame header" in refused.message


# --- WebP and APNG that are still images ----------------------------------------------------------


def test_a_28_byte_lossless_webp_decodes() -> None:
    data = imaging.vp8l_tiny(100, 100)
    assert len(data) == 28
    got = decode(data)
    assert got.bgr.shape == (100, 100, 3)
    assert np.array_equal(got.bgr, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def _apng(frames: int, frame_is_idat: bool) -> bytes:
    w, h = 20, 10
    rows = _grey_rows(w, h)
    actl = imaging.chunk(b"acTL", struct.pack(">II", frames, 0))
    fctl = imaging.chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, w, h, 0, 0, 1, 10, 0, 0))
    before = (actl, fctl) if frame_is_idat else (actl,)
    fdat = imaging.chunk(b"fdAT", struct.pack(">I", 1) + zlib.compress(rows))
    after = () if frame_is_idat else (fctl, fdat)
    return imaging.png_from_rows(w, h, rows, before=before, after=after)


def test_a_single_frame_apng_is_a_still_image() -> None:
    data = _apng(1, frame_is_idat=True)
    assert not getattr(Image.open(io.BytesIO(data)), "is_animated", False)
    got = decode(data)
    assert got.bgr.shape == (10, 20, 3)


def test_an_apng_whose_one_frame_is_not_the_default_image_is_animated() -> None:
    data = _apng(1, frame_is_idat=False)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2  # Pillow counts the default image
    assert rejected(data).reason == "unsupported_format"


# --- bounded work ---------------------------------------------------------------------------------


def test_png_image_data_that_inflates_far_past_its_rows_is_too_expensive() -> None:
    w, h = 64, 64
    rows = b"".join(b"\x00" + bytes(w * 4) for _ in range(h))
    comp = zlib.compressobj(9)
    bomb = comp.compress(rows) + b"".join(comp.compress(bytes(MB)) for _ in range(64)) + comp.flush()
    assert len(bomb) < 100_000
    data = imaging.png_from_rows(w, h, b"", colour=6, idat=bomb)
    refused = rejected(data)
    assert refused.reason == "too_expensive" and "inflates past" in refused.message


def test_a_little_extra_image_data_is_a_warning() -> None:
    w, h = 16, 16
    rows = _grey_rows(w, h) + bytes(100)
    got = decode(imaging.png_from_rows(w, h, rows))
    assert any("past its last row" in warning for warning in got.warnings)


def test_png_image_data_that_ends_early_is_corrupt() -> None:
    w, h = 16, 16
    refused = rejected(imaging.png_from_rows(w, h, _grey_rows(w, h)[:-40]))
    assert refused.reason == "corrupt" and "ends early" in refused.message


@pytest.mark.parametrize("kind", [b"tRNS", b"eXIf", b"tEXt", b"IDAT"])
def test_a_png_chunk_failing_its_checksum_is_corrupt(kind: bytes) -> None:
    """A dropped tRNS, acTL or eXIf changes the picture: every damaged chunk is refused, as Pillow does."""
    w, h = 16, 16
    extra = {b"tRNS": b"\x00\x05", b"eXIf": imaging.exif_block(6), b"tEXt": b"k\x00v"}
    before = (imaging.chunk(kind, extra[kind]),) if kind in extra else ()
    good = imaging.png_from_rows(w, h, _grey_rows(w, h), before=before)
    assert decode(good).bgr.shape[:2] in ((h, w), (w, h))
    at = good.find(kind) + 4  # the first byte of the chunk's data
    bad = good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :]
    refused = rejected(bad)
    assert refused.reason == "corrupt" and "checksum" in refused.message


def test_png_chunks_that_contradict_the_colour_type_are_corrupt() -> None:
    w, h = 8, 8
    rows = _grey_rows(w, h)
    palette = imaging.chunk(b"PLTE", bytes(range(30)))
    assert "palette" in rejected(imaging.png_from_rows(w, h, rows, before=(palette,))).message
    long_key = imaging.chunk(b"tRNS", b"\x00\x01\x02")
    assert "tRNS" in rejected(imaging.png_from_rows(w, h, rows, before=(long_key,))).message
    assert "without its palette" in rejected(imaging.png_from_rows(w, h, rows, colour=3)).message


def test_a_second_acTL_is_corrupt() -> None:
    actl = imaging.chunk(b"acTL", struct.pack(">II", 1, 0))
    refused = rejected(imaging.png_from_rows(4, 4, _grey_rows(4, 4), before=(actl, actl)))
    assert refused.reason == "corrupt" and "acTL" in refused.message


def _webp_of(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunks(data: bytes) -> list[bytes]:
    out, pos = [], 12
    while pos < len(data):
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + length + (length & 1)
        out.append(data[pos:end])
        pos = end
    return out


def test_webp_chunks_must_tile_the_riff_and_hold_one_image() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = imaging.pil_bytes(pil_rgb(imaging.photo(32, 24)), "WEBP", quality=90, exif=exif.tobytes())
    chunks = _chunks(data)
    names = [c[:4] for c in chunks]
    assert names[0] == b"VP8X" and b"EXIF" in names
    image = next(c for c in chunks if c[:4] in (b"VP8 ", b"VP8L"))
    assert decode(_webp_of(*chunks)).info.orientation == 6
    assert "second image chunk" in rejected(_webp_of(*chunks, image)).message
    assert "second VP8X" in rejected(_webp_of(*chunks, chunks[0])).message
    assert "chunk header" in rejected(_webp_of(*chunks, b"XMP ")).message
    cut = _webp_of(*chunks[:-1], chunks[-1][:5])
    assert rejected(cut).reason == "corrupt"


def test_damaged_webp_image_data_does_not_read_on_into_the_exif_after_it() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    data = imaging.pil_bytes(pil_rgb(imaging.photo(96, 72)), "WEBP", quality=90, exif=exif.tobytes())
    vp8 = data.find(b"VP8 ")
    damaged = bytearray(data)
    damaged[vp8 + 8 + 257] ^= 1  # one bit in the first partition: its data now runs past the chunk
    with pytest.raises(Exception, match=r"could not|failed"):
        Image.open(io.BytesIO(bytes(damaged))).load()  # Pillow refuses it
    assert cv2.imdecode(np.frombuffer(bytes(damaged), np.uint8), cv2.IMREAD_COLOR) is not None  # the trap
    assert rejected(bytes(damaged)).reason == "corrupt"


def test_too_many_jpeg_scans_are_too_expensive() -> None:
    data = imaging.pil_bytes(pil_rgb(imaging.photo(64, 48)), "JPEG", progressive=True)
    assert data.count(b"\xff\xda") > 3
    assert decode(data).bgr.shape == (48, 64, 3)
    refused = rejected(data, Limits(max_scans=3))
    assert refused.reason == "too_expensive" and "scans" in refused.message


def test_a_decode_over_its_time_per_megapixel_is_too_expensive() -> None:
    data = imaging.png(imaging.photo(1000, 1000))
    assert decode(data, Limits()).bgr.shape == (1000, 1000, 3)
    refused = rejected(data, Limits(decode_ms_per_mp=1))
    assert refused.reason == "too_expensive" and "over 0.001 s" in refused.message
