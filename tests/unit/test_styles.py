"""The four CPU styles: shapes, determinism, distinct looks, and the strength every style takes."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from atelier.domain import keys
from atelier.imaging import styles

NAMES = styles.CPU_STYLES


def _photo(width: int, height: int) -> np.ndarray:
    """skimage's coffee photo (bundled with the wheel) resized to width x height, as 8-bit BGR."""
    rgb = data.coffee()
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (width, height), interpolation=cv2.INTER_CUBIC)


def _ssim_grey(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        structural_similarity(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY))
    )


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """About 1 MP: big enough for the domain filters to matter, small enough for OpenCV's slow originals."""
    return _photo(1200, 800)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return _photo(384, 256)


@pytest.fixture(scope="module")
def renders(small: np.ndarray) -> dict[str, np.ndarray]:
    return {name: styles.get(name).render(small) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (2, 2), (3, 7), (7, 3), (641, 479), (479, 641)])
def test_output_has_the_input_shape_and_is_uint8(name: str, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = styles.get(name).render(img)
    assert out.shape == img.shape
    assert out.dtype == np.uint8


@pytest.mark.parametrize("name", NAMES)
def test_input_is_left_untouched(name: str, small: np.ndarray) -> None:
    img = small.copy()
    styles.get(name).render(img)
    assert np.array_equal(img, small)


@pytest.mark.parametrize("name", NAMES)
def test_render_is_deterministic(name: str, small: np.ndarray) -> None:
    first = styles.get(name).render(small)
    second = styles.get(name).render(small.copy())
    assert np.array_equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_render_accepts_a_strided_view(name: str, small: np.ndarray) -> None:
    view = small[::2, ::2]
    assert np.array_equal(styles.get(name).render(view), styles.get(name).render(np.ascontiguousarray(view)))


@pytest.mark.parametrize("name", NAMES)
def test_version_and_defaults_follow_the_module_interface(name: str) -> None:
    style = styles.get(name)
    assert style.version == "2"
    assert 0.0 <= style.defaults["strength"] <= 1.0
    assert all(isinstance(v, int | float) for v in style.defaults.values())


@pytest.mark.parametrize("name", NAMES)
def test_style_changes_the_photo(name: str, small: np.ndarray, renders: dict[str, np.ndarray]) -> None:
    out = renders[name]
    mean_change = float(np.abs(out.astype(np.int16) - small.astype(np.int16)).mean())
    assert mean_change > 4.0
    assert _ssim_grey(out, small) < 0.9


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(NAMES, 2)))
def test_styles_differ_from_each_other(a: str, b: str, renders: dict[str, np.ndarray]) -> None:
    mean_change = float(np.abs(renders[a].astype(np.int16) - renders[b].astype(np.int16)).mean())
    assert mean_change > 8.0
    assert _ssim_grey(renders[a], renders[b]) < 0.85


def test_sketch_is_grey_and_mostly_paper(renders: dict[str, np.ndarray]) -> None:
    out = renders["sketch"]
    assert np.array_equal(out[:, :, 0], out[:, :, 1])
    assert np.array_equal(out[:, :, 1], out[:, :, 2])
    assert float(out.mean()) > 170.0


def test_colour_styles_keep_colour(small: np.ndarray, renders: dict[str, np.ndarray]) -> None:
    def chroma(img: np.ndarray) -> float:
        lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
        return float(np.hypot(lab[:, :, 1] - 128.0, lab[:, :, 2] - 128.0).mean())

    for name in ("pencil", "watercolor", "oil"):
        assert chroma(renders[name]) > 0.4 * chroma(small), name


def test_unknown_parameter_is_rejected(small: np.ndarray) -> None:
    with pytest.raises(ValueError, match="no parameter"):
        styles.get("oil").render(small, radius=3)


@pytest.mark.parametrize("name", NAMES)
def test_strength_changes_the_look_and_the_fingerprint(name: str, small: np.ndarray) -> None:
    style = styles.get(name)
    light, strong = style.render(small, strength=0.0), style.render(small, strength=1.0)
    assert float(np.abs(light.astype(np.int16) - strong.astype(np.int16)).mean()) > 2.0
    assert style.fingerprint({"strength": 0.0}) != style.fingerprint({"strength": 1.0})
    assert style.fingerprint() == style.fingerprint({"strength": style.defaults["strength"]})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_strength_outside_0_to_1_is_rejected(name: str, value: float, small: np.ndarray) -> None:
    with pytest.raises(ValueError, match="strength"):
        styles.get(name).render(small, strength=value)


def test_what_all_means_in_the_domain_is_every_cpu_style() -> None:
    """`incoming/all/` renders keys.ALL_STYLES; the style registry must hold exactly those."""
    assert keys.ALL_STYLES == styles.CPU_STYLES
