"""Shared test setup. ``atelier`` is imported first so OpenCV's decode limits are set before cv2 loads."""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atelier  # noqa: F401  (before anything that loads cv2)
from atelier.imaging import styles

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "adapters", "build", "integration", "golden", "e2e")  # folders of tests/, and their markers


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder of tests/ it is in (``pytest -m adapters``)."""
    for item in items:
        folder = item.path.resolve().relative_to(TESTS).parts[0]
        if folder in TIERS:
            item.add_marker(getattr(pytest.mark, folder))


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
