"""Safe decode: caps from the header first, then the fewest pixels that serve the working resolution."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from atelier.errors import ImageRejected
from atelier.limits import Limits
from atelier.probe import ImageInfo, check, probe, raise_too_large

_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


@dataclass
class Decoded:
    """An 8-bit BGR image, its alpha plane if the source had one, and what the header said."""

    bgr: np.ndarray
    alpha: np.ndarray | None
    info: ImageInfo
    reduction: int = 1  # the JPEG DCT-domain reduction used (1, 2, 4 or 8)

    @property
    def height(self) -> int:
        """Rows of the working image."""
        return int(self.bgr.shape[0])

    @property
    def width(self) -> int:
        """Columns of the working image."""
        return int(self.bgr.shape[1])


def inspect(data: bytes, limits: Limits | None = None) -> ImageInfo:
    """Probe and check the caps without decoding."""
    limits = limits or Limits.from_env()
    if len(data) > limits.max_bytes:
        raise_too_large(len(data), limits)
    info = probe(data, len(data))
    check(info, limits)
    return info


def jpeg_reduction(info: ImageInfo, working_pixels: int) -> int:
    """The smallest DCT-domain reduction (1, 2, 4, 8) that brings a JPEG under the working cap."""
    for factor in (1, 2, 4, 8):
        if math.ceil(info.width / factor) * math.ceil(info.height / factor) <= working_pixels:
            return factor
    return 8


def decode(data: bytes, limits: Limits | None = None, info: ImageInfo | None = None) -> Decoded:
    """Decode JPEG, PNG or WebP bytes into a working image, or raise ImageRejected."""
    limits = limits or Limits.from_env()
    if info is None:
        info = inspect(data, limits)
    else:
        check(info, limits)
    buf = np.frombuffer(data, dtype=np.uint8)
    reduction = 1
    if info.format == "jpeg":
        _require_jpeg_end(data)
        reduction = jpeg_reduction(info, limits.working_pixels)
        flags = _REDUCED.get(reduction, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    elif info.has_alpha or info.bit_depth == 16:
        flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    else:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE" in str(exc):  # OpenCV's own limit: the second line of defence held
            raise ImageRejected("too_many_pixels", "the image data is larger than its header says") from exc
        raise ImageRejected("corrupt", f"the {info.format.upper()} data could not be decoded") from exc
    if img is None or img.size == 0:
        raise ImageRejected("corrupt", f"the {info.format.upper()} data could not be decoded")
    bgr, alpha = _to_bgr8(img)
    bgr, alpha = _orient(bgr, alpha, info.orientation)
    bgr, alpha = _fit_working(bgr, alpha, limits.working_pixels)
    return Decoded(bgr, alpha, info, reduction)


def _require_jpeg_end(data: bytes) -> None:
    # Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the first
    # FFD9 after the first scan is the real end of image; a truncated file has none.
    sos = data.find(b"\xff\xda")
    if sos < 0 or data.find(b"\xff\xd9", sos) < 0:
        raise ImageRejected("corrupt", "the JPEG is truncated (no end-of-image marker)")


def _to_bgr8(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if img.dtype == np.uint16:
        img = cv2.convertScaleAbs(img, alpha=1.0 / 257.0)
    elif img.dtype != np.uint8:
        raise ImageRejected("unsupported_format", f"pixel type {img.dtype} is not supported")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), None
    channels = img.shape[2]
    if channels == 3:
        return img, None
    if channels == 4:
        alpha = np.ascontiguousarray(img[:, :, 3])
        bgr = np.ascontiguousarray(img[:, :, :3])
        if int(alpha.min()) == 255:
            return bgr, None
        return bgr, alpha
    if channels == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2BGR), np.ascontiguousarray(
            img[:, :, 1]
        )
    raise ImageRejected("unsupported_format", f"{channels}-channel images are not supported")


_ORIENT: dict[int, tuple[int | None, int | None]] = {
    # orientation: (flip code applied first, rotation)
    1: (None, None),
    2: (1, None),
    3: (None, cv2.ROTATE_180),
    4: (0, None),
    5: (1, cv2.ROTATE_90_COUNTERCLOCKWISE),
    6: (None, cv2.ROTATE_90_CLOCKWISE),
    7: (1, cv2.ROTATE_90_CLOCKWISE),
    8: (None, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _orient(
    bgr: np.ndarray, alpha: np.ndarray | None, orientation: int
) -> tuple[np.ndarray, np.ndarray | None]:
    flip, rotate = _ORIENT.get(orientation, (None, None))

    def apply(a: np.ndarray) -> np.ndarray:
        if flip is not None:
            a = cv2.flip(a, flip)
        if rotate is not None:
            a = cv2.rotate(a, rotate)
        return a

    return apply(bgr), (apply(alpha) if alpha is not None else None)


def fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest (width, height) of the same aspect ratio with at most ``max_pixels`` pixels."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w = max(1, math.floor(width * scale))
    h = max(1, math.floor(height * scale))
    while w * h > max_pixels:
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def _fit_working(
    bgr: np.ndarray, alpha: np.ndarray | None, working_pixels: int
) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = bgr.shape[:2]
    nw, nh = fit_size(w, h, working_pixels)
    if (nw, nh) == (w, h):
        return bgr, alpha
    bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    if alpha is not None:
        alpha = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_AREA)
    return bgr, alpha
