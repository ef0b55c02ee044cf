"""What makes each style hold up on real photos of any size: scale, grain, tone and fine detail.

These are the invariants a person relies on without naming them: the same photo looks the same drawn at
0.3 MP or at 6 MP; a phone's sensor grain does not change the drawing; a night or a bright photo is
still drawn, not returned blank or black; a painting at 6 MP keeps fine structures instead of being
painted small and enlarged.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from atelier.imaging import styles
from tests import corpus

PAPER = 230  # luma at or above this reads as bare paper
BLACK = 25  # luma at or below this reads as solid black
SMALL = 300_000
LARGE = 6_000_000


def luma(bgr: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, as OpenCV computes it."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def paper_share(bgr: np.ndarray) -> float:
    """Share of pixels that read as bare paper."""
    return float(np.mean(luma(bgr) >= PAPER))


def black_share(bgr: np.ndarray) -> float:
    """Share of pixels that read as solid black."""
    return float(np.mean(luma(bgr) <= BLACK))


def render(name: str, bgr: np.ndarray) -> np.ndarray:
    """One style with its defaults."""
    return styles.get(name).render(bgr)


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["astronaut", "china"])
@pytest.mark.parametrize("name", styles.CPU_STYLES)
def test_a_6mp_render_reduced_matches_the_03mp_render(name: str, photo: str) -> None:
    large = corpus.at_pixels(corpus.photo(photo), LARGE)
    small = corpus.at_pixels(large, SMALL)
    h, w = small.shape[:2]
    from_large = cv2.resize(render(name, large), (w, h), interpolation=cv2.INTER_AREA)
    score = structural_similarity(render(name, small), from_large, channel_axis=2, data_range=255)
    assert score >= 0.80, f"{name} on {photo}: SSIM {score:.3f} between the 0.3 MP and the 6 MP render"


@pytest.fixture(scope="module")
def phone_photos() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """12 MP photos, clean and with sensor grain plus JPEG 85."""
    out = {}
    for i, name in enumerate(("astronaut", "rocket")):
        clean = corpus.phone_sized(corpus.photo(name))
        out[name] = (clean, corpus.sensor_grain(clean, seed=i))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["astronaut", "rocket"])
@pytest.mark.parametrize("name", styles.CPU_STYLES)
def test_sensor_grain_does_not_change_the_picture(
    name: str, photo: str, phone_photos: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    clean, grainy = phone_photos[photo]
    a, b = render(name, clean), render(name, grainy)
    shift = abs(float(luma(a).mean()) - float(luma(b).mean()))
    assert shift <= 5.0, f"{name} on {photo}: grain moves mean luma by {shift:.1f} levels"
    if name in ("sketch", "pencil"):
        moved = abs(paper_share(a) - paper_share(b))
        assert moved <= 0.05, f"{name} on {photo}: grain moves the paper share by {moved:.1%}"


@pytest.mark.parametrize("photo", ["night", "night_street", "bright", "bright_sky"])
@pytest.mark.parametrize("name", styles.CPU_STYLES)
def test_night_and_bright_photos_are_still_drawn(name: str, photo: str) -> None:
    bgr = corpus.at_pixels(corpus.photo(photo), 1_000_000)
    assert paper_share(bgr) <= 0.85 and black_share(bgr) <= 0.40, "the photo itself is blank or black"
    out = render(name, bgr)
    assert paper_share(out) <= 0.85, f"{name} on {photo}: {paper_share(out):.0%} bare paper"
    assert black_share(out) <= 0.40, f"{name} on {photo}: {black_share(out):.0%} solid black"


def lattice_contrast(bgr: np.ndarray, width: int, height: int) -> float:
    """Mean luma of the lattice's gaps minus that of its lines, inside the lattice square."""
    y0, x0, side = corpus.lattice_box(width, height)
    m = 16
    patch = luma(bgr)[y0 + m : y0 + side - m, x0 + m : x0 + side - m].astype(np.float32)
    yy, xx = np.mgrid[m : side - m, m : side - m]
    lines = ((yy % 8) < 4) | ((xx % 8) < 4)
    return float(patch[~lines].mean() - patch[lines].mean())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["oil", "watercolor"])
def test_paintings_keep_fine_structure_at_6mp(name: str) -> None:
    w, h = 3072, 2048
    card = corpus.lattice(w, h)
    before = lattice_contrast(card, w, h)
    kept = lattice_contrast(render(name, card), w, h) / before
    # The same painting made at 0.4 MP and enlarged, the soft result this test exists to catch.
    small = cv2.resize(card, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    enlarged = cv2.resize(render(name, small), (w, h), interpolation=cv2.INTER_LINEAR)
    lost = lattice_contrast(enlarged, w, h) / before
    assert lost < 0.2, f"the control should lose the lattice (kept {lost:.0%})"
    assert kept >= 0.35, f"{name} keeps {kept:.0%} of a 4 px lattice's contrast at 6 MP"
