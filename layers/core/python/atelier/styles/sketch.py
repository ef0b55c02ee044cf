"""Graphite sketch by dodge-divide: grey divided by its blurred negative, then darkened like soft lead."""

from __future__ import annotations

import cv2
import numpy as np

from atelier.styles import _filters as F

VERSION = "1"
DEFAULTS: dict[str, float | int] = {"blur": 0.01, "darkness": 1.8}


def render(bgr: np.ndarray, blur: float = 0.01, darkness: float = 1.8) -> np.ndarray:
    """``blur`` is the blur kernel as a share of the longer side; ``darkness`` (>= 1) deepens the strokes."""
    h, w = bgr.shape[:2]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    # A kernel of k pixels has the sigma OpenCV gives it by default: 0.3 * ((k - 1) / 2 - 1) + 0.8.
    k = max(3.0, max(h, w) * blur)
    sigma = 0.3 * ((k - 1.0) * 0.5 - 1.0) + 0.8
    # The blur is low-pass, so it runs on a copy reduced to about 2 pixels per sigma.
    f = max(1, int(sigma / 2.0))
    small = F.area_down(cv2.bitwise_not(gray), f)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REPLICATE)
    inv_blur = F.up_rows(small, f, 0, h, w) if f > 1 else small
    out = cv2.divide(gray, cv2.bitwise_not(inv_blur), scale=256)
    lut = np.rint(255.0 * (np.arange(256) / 255.0) ** max(1.0, darkness)).astype(np.uint8)
    return cv2.cvtColor(cv2.LUT(out, lut), cv2.COLOR_GRAY2BGR)
