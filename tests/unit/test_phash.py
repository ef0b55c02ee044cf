"""atelier.imaging.phash equals imagehash.phash on the same decoded pixels, for real photos and
generated images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image
from skimage import data

from atelier.imaging import phash as phash_module
from atelier.imaging.phash import from_hex, hamming, phash, resize_luma_native, resize_luma_pillow, to_hex

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
GRAYS = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock", "cell")


def reference(bgr: np.ndarray) -> str:
    """imagehash's value on the same pixels, as a handler would see them after decoding."""
    return str(imagehash.phash(Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))))


def _bgr(name: str) -> np.ndarray:
    """A skimage sample image (bundled, no network) as 8-bit BGR."""
    img = getattr(data, name)()
    if img.dtype != np.uint8:
        img = (img * 255).astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2BGR)


def _jpeg(bgr: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _photo_corpus() -> dict[str, np.ndarray]:
    """Real photos and benign variants of them (JPEG, resizes, rotation, brightness, crop)."""
    out: dict[str, np.ndarray] = {}
    for name in PHOTOS + GRAYS:
        img = _bgr(name)
        h, w = img.shape[:2]
        out[name] = img
        out[f"{name}-q60"] = _jpeg(img, 60)
        out[f"{name}-x0.5"] = cv2.resize(img, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        out[f"{name}-x1.7"] = cv2.resize(img, (w * 17 // 10, h * 17 // 10), interpolation=cv2.INTER_CUBIC)
        out[f"{name}-rot90"] = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
        out[f"{name}-bright"] = cv2.convertScaleAbs(img, alpha=1.1)
        out[f"{name}-crop"] = img[h // 50 :, w // 50 :]
        out[f"{name}-tall"] = cv2.resize(img, (w // 3 + 1, h * 2), interpolation=cv2.INTER_LINEAR)
    return out


def _generated_corpus() -> dict[str, np.ndarray]:
    """Noise, flat colours, gradients, stripes, tiny and extreme shapes."""
    rng = np.random.default_rng(20240601)
    out: dict[str, np.ndarray] = {}
    shapes = [(1, 1), (7, 3), (3, 7), (2, 2), (1, 500), (500, 1), (32, 32), (32, 100), (100, 32), (31, 33)]
    shapes += [(33, 31), (2, 2000), (2000, 3), (64, 47), (64, 48), (600, 283), (600, 284), (1200, 620)]
    for h, w in shapes:
        out[f"noise-{h}x{w}"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for value in (0, 1, 127, 128, 254, 255):
        out[f"flat-{value}"] = np.full((50, 70, 3), value, np.uint8)
    for i, colour in enumerate([(10, 200, 77), (255, 0, 0), (0, 0, 255), (3, 141, 59)]):
        out[f"flat-colour-{i}"] = np.full((41, 39, 3), colour, np.uint8)
    ramp = np.linspace(0, 255, 300).astype(np.uint8)
    out["gradient-h"] = np.tile(ramp[None, :, None], (200, 1, 3))
    out["gradient-v"] = np.tile(ramp[:, None, None], (1, 200, 3))
    diag = ((np.arange(256)[:, None] + np.arange(256)[None, :]) // 2).astype(np.uint8)
    out["gradient-d"] = np.repeat(diag[..., None], 3, axis=2)
    out["gradient-colour"] = np.stack(
        [
            np.tile(ramp[None, :], (300, 1)),
            np.tile(ramp[:, None], (1, 300)),
            255 - np.tile(ramp[None, :], (300, 1)),
        ],
        axis=-1,
    )
    stripes = ((np.arange(400) // 5 % 2) * 255).astype(np.uint8)
    out["stripes-v"] = np.tile(stripes[None, :, None], (300, 1, 3))
    out["stripes-h"] = np.tile(stripes[:, None, None], (1, 300, 3))
    checker = (((np.arange(256)[:, None] // 8 + np.arange(256)[None, :] // 8) % 2) * 255).astype(np.uint8)
    out["checker"] = np.repeat(checker[..., None], 3, axis=2)
    out["panorama"] = rng.integers(0, 256, (40, 4000, 3), dtype=np.uint8)
    out["banner"] = rng.integers(0, 256, (4000, 40, 3), dtype=np.uint8)
    return out


CORPUS = {**_photo_corpus(), **_generated_corpus()}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_phash_equals_imagehash(name: str) -> None:
    """Every image of the corpus hashes to exactly imagehash's value."""
    image = CORPUS[name]
    assert to_hex(phash(image)) == reference(image)


def test_the_native_kernel_is_built_and_used() -> None:
    """`make` builds libatelier_phash.so beside atelier/phash.py, and phash() runs on it."""
    assert phash_module.LIBRARY.is_file(), "run `make native`"
    assert phash_module.backend() == "native"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_native_and_pillow_luma_images_are_byte_identical(name: str) -> None:
    """Both ways to the 32x32 luma image (the compiled kernel and Pillow itself) give the same bytes."""
    image = CORPUS[name]
    assert np.array_equal(resize_luma_native(image), resize_luma_pillow(image))


def test_native_kernel_on_random_shapes_and_both_pass_orders() -> None:
    """Random sizes around Pillow's switch to the vertical pass first, and sizes of exactly 32."""
    rng = np.random.default_rng(11)
    shapes = [(int(h), int(w)) for h, w in rng.integers(1, 700, (40, 2))]
    shapes += [(32, 7), (7, 32), (32, 32), (95, 63), (96, 63), (97, 63), (3000, 1200), (1200, 3000)]
    for height, width in shapes:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert np.array_equal(resize_luma_native(image), resize_luma_pillow(image)), (height, width)


def test_corpus_is_large_and_varied() -> None:
    """The equality test above runs over well over a hundred images, photos and generated ones."""
    assert len(CORPUS) >= 150
    assert sum(1 for k in CORPUS if "-" not in k or k.split("-")[0] in PHOTOS + GRAYS) >= 100


@pytest.mark.parametrize("resize", [resize_luma_native, resize_luma_pillow], ids=["native", "pillow"])
def test_resize_reads_bgr_views_as_imagehash_reads_rgb(resize: Callable[[np.ndarray], np.ndarray]) -> None:
    """BGR arrays (contiguous, views, channel-reversed views) are read as the RGB image imagehash gets."""
    rng = np.random.default_rng(7)
    for height, width in ((33, 31), (40, 5), (401, 999), (999, 401)):
        big = rng.integers(0, 256, (height + 7, width + 9, 3), dtype=np.uint8)
        for image in (big[3 : 3 + height, 5 : 5 + width], big[3 : 3 + height, 5 : 5 + width, ::-1]):
            pil = Image.fromarray(np.ascontiguousarray(image[..., ::-1])).convert("L")
            expected = np.asarray(pil.resize((32, 32), Image.Resampling.LANCZOS)).astype(np.float64)
            assert np.array_equal(resize(image), expected), (height, width)


def test_hex_round_trip_and_hamming() -> None:
    """to_hex gives 16 hex digits, from_hex inverts it, hamming counts differing bits."""
    value = phash(CORPUS["astronaut"])
    assert len(to_hex(value)) == 16
    assert from_hex(to_hex(value)) == value
    assert hamming(value, value) == 0
    assert hamming(0, (1 << 64) - 1) == 64
    assert hamming(0b1011, 0b0001) == 2


def test_rejects_what_is_not_an_8_bit_bgr_image() -> None:
    """Grey, alpha, float or empty arrays are refused rather than hashed wrongly."""
    with pytest.raises(ValueError):
        phash(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        phash(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError):
        phash(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        phash(np.zeros((0, 10, 3), np.uint8))


def test_runtime_module_needs_no_scipy_or_imagehash() -> None:
    """The hash imports numpy and Pillow only: scipy and PyWavelets would not fit the Lambda budget."""
    import atelier.imaging.phash as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    for banned in ("scipy", "imagehash", "pywt"):
        assert f"import {banned}" not in source
        assert f"from {banned}" not in source
