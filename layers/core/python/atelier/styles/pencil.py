"""Colour pencil (placeholder: OpenCV's own pencilSketch)."""

from __future__ import annotations

import cv2
import numpy as np

VERSION = "0"
DEFAULTS = {"sigma_s": 60.0, "sigma_r": 0.07, "shade_factor": 0.02}


def render(bgr: np.ndarray, sigma_s: float = 60.0, sigma_r: float = 0.07, shade_factor: float = 0.02) -> np.ndarray:
    """OpenCV's colour pencil drawing."""
    _, color = cv2.pencilSketch(bgr, sigma_s=sigma_s, sigma_r=sigma_r, shade_factor=shade_factor)
    return color
