"""Golden images: each style on a fixed photo, compared with a committed render by SSIM.

Regenerate the expected images after an intended change of look (and bump the style's VERSION) with
``ATELIER_UPDATE_GOLDEN=1 pytest tests/golden/test_golden_styles.py``. On a mismatch the actual, expected
and difference images are written to tests/golden/failures/ for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from atelier.imaging import styles

HERE = Path(__file__).parent
EXPECTED = HERE / "expected"
FAILURES = HERE / "failures"
THRESHOLD = 0.98
UPDATE = os.environ.get("ATELIER_UPDATE_GOLDEN") == "1"

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    """skimage's coffee photo (bundled with the wheel), 384 x 256, as 8-bit BGR."""
    bgr = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    return cv2.resize(bgr, (384, 256), interpolation=cv2.INTER_AREA)


def _write_failure(name: str, actual: np.ndarray, expected: np.ndarray) -> None:
    FAILURES.mkdir(exist_ok=True)
    diff = cv2.absdiff(actual, expected)
    diff = cv2.applyColorMap(cv2.convertScaleAbs(diff.max(axis=2), alpha=4.0), cv2.COLORMAP_INFERNO)
    cv2.imwrite(str(FAILURES / f"{name}_actual.png"), actual)
    cv2.imwrite(str(FAILURES / f"{name}_expected.png"), expected)
    cv2.imwrite(str(FAILURES / f"{name}_diff.png"), diff)
    cv2.imwrite(str(FAILURES / f"{name}_side_by_side.png"), np.hstack([expected, actual, diff]))


@pytest.mark.parametrize("name", styles.CPU_STYLES)
def test_style_matches_golden_image(name: str, sample: np.ndarray) -> None:
    actual = styles.get(name).render(sample)
    path = EXPECTED / f"{name}.png"
    if UPDATE:
        EXPECTED.mkdir(exist_ok=True)
        assert cv2.imwrite(str(path), actual, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert expected is not None, f"{path} is missing: run with ATELIER_UPDATE_GOLDEN=1 to create it"
    assert expected.shape == actual.shape
    score = float(structural_similarity(actual, expected, channel_axis=2))
    if score < THRESHOLD:
        _write_failure(name, actual, expected)
    assert score >= THRESHOLD, f"{name}: SSIM {score:.4f} < {THRESHOLD}; see {FAILURES}"
