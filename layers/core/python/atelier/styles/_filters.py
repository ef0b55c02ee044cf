"""Shared pieces of the CPU styles: resolution scale, neighbour differences, guided upsampling."""

from __future__ import annotations

import math

import cv2
import numpy as np

REFERENCE_PIXELS = 3072 * 2048


def scale(height: int, width: int) -> float:
    """Linear size relative to the 3072x2048 reference, where spatial parameters are given in pixels."""
    return math.sqrt(max(1, height * width) / REFERENCE_PIXELS)


def channel_steps(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum over B, G, R of |difference to the previous pixel| along x and along y, saturated at 255.

    Element [i, j] of the first is the step from (i, j-1) to (i, j); the first column and row are 0.
    """
    h, w = bgr.shape[:2]
    sx = np.zeros((h, w), np.uint8)
    sy = np.zeros((h, w), np.uint8)
    planes = cv2.split(bgr)
    for p in planes:
        if w > 1:
            cv2.add(sx[:, 1:], cv2.absdiff(p[:, 1:], p[:, :-1]), dst=sx[:, 1:])
        if h > 1:
            cv2.add(sy[1:], cv2.absdiff(p[1:], p[:-1]), dst=sy[1:])
    return sx, sy


def add_offset(bgr: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``bgr + offset`` per channel, saturated to 8 bits; ``offset`` is a single int16 plane."""
    out = [cv2.add(p, offset, dtype=cv2.CV_8U) for p in cv2.split(bgr)]
    return cv2.merge(out)
