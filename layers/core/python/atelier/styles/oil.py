"""Oil painting (placeholder: a median blur)."""

from __future__ import annotations

import cv2
import numpy as np

VERSION = "0"
DEFAULTS = {"size": 7}


def render(bgr: np.ndarray, size: int = 7) -> np.ndarray:
    """Flat patches of colour."""
    return cv2.medianBlur(bgr, size | 1)
