"""Shared test setup. ``atelier`` is imported first so OpenCV's decode limits are set before cv2 loads."""

import dataclasses
from typing import Any

import numpy as np
import pytest

import atelier  # noqa: F401  (before anything that loads cv2)
from atelier.imaging import styles


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Every CPU style renders by recording its strength and handing the photo back (``strength`` tests)."""
    got: dict[str, list[float]] = {name: [] for name in styles.CPU_STYLES}
    for name in styles.CPU_STYLES:
        style = styles.STYLES[name]

        def render(bgr: np.ndarray, _name: str = name, **params: Any) -> np.ndarray:
            got[_name].append(params["strength"])
            return bgr.copy()

        monkeypatch.setitem(styles.STYLES, name, dataclasses.replace(style, render_fn=render))
    return got
