"""Encode a render: JPEG, PNG or WebP, with none of the input's metadata."""

from __future__ import annotations

import cv2
import numpy as np

from atelier.imaging.probe import FORMATS, Format

CONTENT_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
DEFAULT_JPEG_QUALITY = 90
DEFAULT_WEBP_QUALITY = 90
DEFAULT_PNG_COMPRESSION = 3


def encode(
    image: np.ndarray,
    fmt: Format,
    alpha: np.ndarray | None = None,
    quality: int | None = None,
) -> bytes:
    """Encode an 8-bit grey or BGR image; alpha is kept where the format carries it (PNG, WebP)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if image.dtype != np.uint8:
        raise ValueError(f"encode expects uint8 pixels, got {image.dtype}")
    if alpha is not None:
        if fmt == "jpeg":
            image = _over_white(image, alpha)
        else:
            bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            image = cv2.merge([*cv2.split(bgr), alpha])
    if fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality or DEFAULT_JPEG_QUALITY]
        ok, buf = cv2.imencode(".jpg", image, params)
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, DEFAULT_PNG_COMPRESSION])
    else:
        ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality or DEFAULT_WEBP_QUALITY])
    if not ok:  # pragma: no cover - OpenCV fails only on impossible shapes
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buf.tobytes()


def _over_white(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white, the paper an art print is shown on."""
    a = alpha.astype(np.float32) * (1.0 / 255.0)
    if image.ndim == 3:
        a = a[:, :, None]
    out = image.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
