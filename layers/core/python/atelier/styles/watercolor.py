"""Watercolour (placeholder: OpenCV's own stylization)."""

from __future__ import annotations

import cv2
import numpy as np

VERSION = "0"
DEFAULTS = {"sigma_s": 60.0, "sigma_r": 0.45}


def render(bgr: np.ndarray, sigma_s: float = 60.0, sigma_r: float = 0.45) -> np.ndarray:
    """OpenCV's stylization."""
    return cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r)
