"""Graphite sketch by dodge-divide: grey divided by its blurred negative."""

from __future__ import annotations

import cv2
import numpy as np

VERSION = "1"
DEFAULTS = {"blur": 0.01}


def render(bgr: np.ndarray, blur: float = 0.01) -> np.ndarray:
    """Blur radius as a share of the longer side, so the look does not depend on resolution."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    k = max(3, int(max(gray.shape) * blur) | 1)
    inv_blur = cv2.GaussianBlur(255 - gray, (k, k), 0)
    out = cv2.divide(gray, 255 - inv_blur, scale=256)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
