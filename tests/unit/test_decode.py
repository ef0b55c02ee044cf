"""Safe decode: formats by magic bytes, sizes from headers, caps before pixels, orientation, depth, alpha."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits
from atelier.imaging.decode import decode, fit_size, inspect, jpeg_reduction
from atelier.imaging.encode import encode
from atelier.imaging.probe import Format, ImageInfo, probe, probe_reader, sniff
from tests import imaging


def reason_of(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(ImageRejected) as info:
        decode(data, limits or Limits())
    return info.value.reason


# --- format by magic bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"", "empty file"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "GIF"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"BM\x36\x00\x00\x00\x00\x00", "BMP"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"<svg width='10' height='10'></svg>", "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC/HEIF"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"this is not a photo, just some words\n", "text"),
    ],
)
def test_non_images_are_rejected_naming_what_was_detected(data: bytes, detected: str) -> None:
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert info.value.reason == "unsupported_format"
    assert detected in info.value.message


def test_real_gif_tiff_bmp_files_are_rejected_by_content_not_name() -> None:
    pil = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for fmt, name in (("GIF", "GIF"), ("TIFF", "TIFF"), ("BMP", "BMP")):
        data = imaging.pil_bytes(pil, fmt)
        assert sniff(data) == name
        assert reason_of(data) == "unsupported_format"


def test_a_jpeg_named_png_is_still_a_jpeg() -> None:
    data = imaging.jpeg(imaging.photo(64, 48))
    assert inspect(data).format == "jpeg"  # nothing but the bytes is ever consulted


# --- sizes from the header ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoder", "fmt"),
    [
        (lambda im: imaging.jpeg(im), "jpeg"),
        (lambda im: imaging.pil_bytes(Image.fromarray(im[:, :, ::-1]), "JPEG", progressive=True), "jpeg"),
        (lambda im: imaging.png(im), "png"),
        (lambda im: imaging.webp(im, 80), "webp"),  # VP8
        (lambda im: imaging.webp(im, 101), "webp"),  # VP8L
        (lambda im: imaging.webp(cv2.cvtColor(im, cv2.COLOR_BGR2BGRA), 80), "webp"),  # VP8X + ALPH
    ],
)
@pytest.mark.parametrize(("w", "h"), [(1, 1), (37, 11), (640, 427)])
def test_header_size_matches_the_decoded_size(encoder, fmt: str, w: int, h: int) -> None:
    data = encoder(imaging.photo(w, h))
    info = probe(data)
    assert (info.format, info.width, info.height) == (fmt, w, h)
    assert decode(data).bgr.shape[:2] == (h, w)


def test_probe_asks_for_more_bytes_only_when_the_header_needs_them() -> None:
    big_app = b"\xff\xe2" + (65000).to_bytes(2, "big") + b"\x00" * 64998  # a 64 KB ICC-like segment
    data = imaging.jpeg(imaging.photo(50, 40))
    padded = data[:2] + big_app * 3 + data[2:]
    reads: list[int] = []

    def read(n: int) -> bytes:
        reads.append(n)
        return padded[:n]

    info = probe_reader(read, len(padded), Limits())
    assert (info.width, info.height) == (50, 40)
    assert reads[0] == 64 * 1024 and len(reads) >= 2  # grew past the first read, as a ranged read would


def test_byte_cap_is_checked_before_anything_is_read() -> None:
    reads: list[int] = []
    with pytest.raises(ImageRejected) as info:

        def read(n: int) -> bytes:
            reads.append(n)
            return b""

        probe_reader(read, 41 * 1024 * 1024, Limits())
    assert info.value.reason == "too_large_bytes" and reads == []


def test_pixel_and_side_caps_come_from_the_header() -> None:
    limits = Limits(max_pixels=1_000_000, max_side=1_500)
    assert reason_of(imaging.png_header_only(1001, 1000), limits) == "too_many_pixels"
    assert reason_of(imaging.png_header_only(1501, 10), limits) == "too_many_pixels"
    assert decode(imaging.png(imaging.photo(1000, 1000)), limits).bgr.shape == (1000, 1000, 3)


def test_rejection_messages_say_what_to_do() -> None:
    with pytest.raises(ImageRejected) as info:
        decode(imaging.png_header_only(50_000, 50_000))
    assert "50000x50000" in info.value.message and "2500.0 MP" in info.value.message
    assert str(info.value).startswith("too_many_pixels: ")
    assert info.value.as_dict() == {"reason": "too_many_pixels", "message": info.value.message}


# --- corrupt input --------------------------------------------------------------------------------


def test_truncated_jpeg_is_corrupt() -> None:
    data = imaging.jpeg(imaging.photo(200, 150))
    assert reason_of(data[: len(data) // 2]) == "corrupt"
    assert reason_of(data[:300]) == "corrupt"  # ends inside the entropy-coded data or headers


def test_truncated_png_and_webp_are_corrupt() -> None:
    p = imaging.png(imaging.photo(200, 150))
    w = imaging.webp(imaging.photo(200, 150))
    assert reason_of(p[: len(p) // 2]) == "corrupt"
    assert reason_of(w[: len(w) // 2]) == "corrupt"


def test_header_that_stops_early_is_corrupt() -> None:
    assert reason_of(b"\xff\xd8\xff") == "corrupt"
    assert reason_of(b"\x89PNG\r\n\x1a\n\x00\x00") == "corrupt"


# --- working resolution ---------------------------------------------------------------------------


def test_large_jpeg_is_decoded_reduced_in_the_dct_domain() -> None:
    img = imaging.photo(1600, 1200)
    limits = Limits(working_pixels=600_000)
    decoded = decode(imaging.jpeg(img), limits)
    assert decoded.reduction == 2
    assert decoded.bgr.shape == (600, 800, 3)
    assert decoded.height * decoded.width <= limits.working_pixels


def test_reduction_factor_is_the_smallest_that_fits() -> None:
    info = ImageInfo("jpeg", 6000, 4500)
    assert jpeg_reduction(info, 24_000_000) == 2
    assert jpeg_reduction(info, 27_000_000) == 1
    assert jpeg_reduction(info, 1_000_000) == 8


def test_large_png_is_reduced_with_area_interpolation_keeping_the_aspect() -> None:
    limits = Limits(working_pixels=100_000)
    decoded = decode(imaging.png(imaging.photo(800, 400)), limits)
    h, w = decoded.bgr.shape[:2]
    assert h * w <= 100_000 and abs(w / h - 2.0) < 0.02


def test_fit_size_never_exceeds_the_cap() -> None:
    for w, h, cap in [(7, 3, 20), (6000, 4001, 24_000_000), (1, 99_999, 50_000), (4096, 4096, 16_777_215)]:
        nw, nh = fit_size(w, h, cap)
        assert nw * nh <= cap and nw >= 1 and nh >= 1


# --- orientation, depth, alpha, metadata ---------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:20, :30] = (255, 255, 255)  # a white block in the stored image's top-left corner
    decoded = decode(imaging.with_orientation(img, orientation))
    expected_shape = (60, 40) if orientation >= 5 else (40, 60)
    assert decoded.bgr.shape[:2] == expected_shape
    # where the stored top-left corner ends up after the EXIF transform
    corners = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}
    h, w = decoded.bgr.shape[:2]
    samples = {"tl": (2, 2), "tr": (2, w - 3), "bl": (h - 3, 2), "br": (h - 3, w - 3)}
    y, x = samples[corners[orientation]]
    assert decoded.bgr[y, x].mean() > 200, orientation
    assert decoded.info.orientation == orientation


def test_grey_16_bit_and_palette_pngs_become_8_bit_colour() -> None:
    grey = imaging.png(np.full((10, 12), 77, np.uint8))
    deep = imaging.png(np.full((10, 12, 3), 40000, np.uint16))
    pal = imaging.pil_bytes(
        Image.fromarray(np.full((10, 12, 3), (10, 200, 30), np.uint8)).convert(
            "P", palette=Image.Palette.ADAPTIVE
        ),
        "PNG",
    )
    for data in (grey, deep, pal):
        d = decode(data)
        assert d.bgr.dtype == np.uint8 and d.bgr.shape == (10, 12, 3)
    assert decode(grey).bgr[0, 0].tolist() == [77, 77, 77]
    assert decode(deep).bgr[0, 0].tolist() == [156, 156, 156]  # 40000 / 257, rounded
    assert decode(pal).bgr[0, 0].tolist() == [30, 200, 10]


def test_16_bit_png_with_alpha_and_grey_alpha_keep_transparency() -> None:
    rgba16 = np.zeros((8, 8, 4), np.uint16)
    rgba16[..., 3] = 65535
    rgba16[:4, :, 3] = 0
    d = decode(imaging.png(rgba16))
    assert d.alpha is not None and d.alpha[0, 0] == 0 and d.alpha[7, 7] == 255
    ga = Image.fromarray(
        np.dstack([np.full((8, 8), 90, np.uint8), np.tile([0, 255], (8, 4)).astype(np.uint8)]), "LA"
    )
    d2 = decode(imaging.pil_bytes(ga, "PNG"))
    assert d2.alpha is not None and d2.bgr[0, 0].tolist() == [90, 90, 90]


def test_transparency_is_kept_where_the_output_format_carries_it() -> None:
    bgra = cv2.cvtColor(imaging.photo(32, 32), cv2.COLOR_BGR2BGRA)
    bgra[:, :16, 3] = 0
    d = decode(imaging.png(bgra))
    assert d.alpha is not None
    for fmt in ("png", "webp"):
        back = cv2.imdecode(np.frombuffer(encode(d.bgr, fmt, d.alpha), np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.shape[2] == 4 and back[5, 5, 3] == 0 and back[5, 30, 3] == 255
    jpg = cv2.imdecode(np.frombuffer(encode(d.bgr, "jpeg", d.alpha), np.uint8), cv2.IMREAD_UNCHANGED)
    assert jpg.shape[2] == 3 and jpg[5, 5].min() > 240  # transparent areas land on white paper


def test_opaque_alpha_is_dropped() -> None:
    bgra = cv2.cvtColor(imaging.photo(16, 16), cv2.COLOR_BGR2BGRA)
    assert decode(imaging.png(bgra)).alpha is None


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_outputs_carry_none_of_the_inputs_metadata(fmt: Format) -> None:
    src = imaging.with_orientation(imaging.photo(64, 48), 1)
    assert b"AtelierTestCamera" in src and b"Exif" in src
    out = encode(decode(src).bgr, fmt)
    assert b"AtelierTestCamera" not in out and b"Exif" not in out and b"GPS" not in out


def test_encode_defaults_to_jpeg_quality_90() -> None:
    img = imaging.photo(128, 96)
    assert encode(img, "jpeg") == encode(img, "jpeg", quality=90)
    assert len(encode(img, "jpeg", quality=50)) < len(encode(img, "jpeg"))
