"""Safe decode: caps from the header first, then the whole file's structure, then the fewest pixels that
serve the working resolution.

JPEG is decoded by libjpeg-turbo through simplejpeg, which reports libjpeg's warnings (OpenCV drops them):
"premature end of data", a bad Huffman code and the like refuse the image as ``corrupt``, with libjpeg's
own words; the few libjpeg treats as harmless are logged and the image renders. Its output, reduced or
not, is bit-identical to OpenCV's. PNG and WebP are decoded by OpenCV once
:mod:`atelier.imaging.container` has checked their chunks, checksums and inflated size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
import simplejpeg

from atelier.config import read_limits
from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits
from atelier.imaging import container
from atelier.imaging.probe import ImageInfo, check, probe, raise_too_large

log = logging.getLogger(__name__)

_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
_NO_EXIF = cv2.IMREAD_IGNORE_ORIENTATION  # the orientation is applied here, from the whole file
_OPENCV_WEBP_MIN = 32  # grfmt_webp.cpp's WEBP_HEADER_SIZE; a lossless WebP can be 28 bytes


@dataclass
class Decoded:
    """An 8-bit BGR image, its alpha plane if the source had one, and what the header said."""

    bgr: np.ndarray
    alpha: np.ndarray | None
    info: ImageInfo  # what the header said, with the orientation the whole file gives
    reduction: int = 1  # the JPEG DCT-domain reduction used (1, 2, 4 or 8)
    warnings: tuple[str, ...] = ()  # what the decoders found odd but harmless

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
    limits = limits or read_limits()
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


def read_whole(
    data: bytes, limits: Limits, info: ImageInfo | None = None
) -> tuple[ImageInfo, container.Container, container.Budget]:
    """What every decode starts with: the caps from the header, then the whole file's structure. The
    header comes back with the orientation the whole file gives, beside the time budget it started."""
    if info is None:
        info = inspect(data, limits)
    else:
        check(info, limits)
    budget = container.Budget(info, limits)
    box = container.read(data, info, limits, budget)
    return replace(info, orientation=box.orientation), box, budget


def decode(data: bytes, limits: Limits | None = None, info: ImageInfo | None = None) -> Decoded:
    """Decode JPEG, PNG or WebP bytes into a working image, or raise ImageRejected."""
    limits = limits or read_limits()
    info, box, budget = read_whole(data, limits, info)
    warnings = list(box.warnings)
    reduction = 1
    if info.format == "jpeg":
        reduction = jpeg_reduction(info, limits.working_pixels)
        img = jpeg_pixels(box.data, info, reduction, warnings)
    else:
        img = _opencv_pixels(box.data, info)
        if box.grey_key is not None and img.ndim == 2:
            img = _grey_with_key(img, box.grey_key, info.bit_depth)
    budget.check("decoding")
    for warning in warnings:
        log.warning("decoded with a warning: %s", warning)
    bgr, alpha = to_bgr8(img)
    bgr, alpha = orient(bgr, alpha, info.orientation)
    bgr, alpha = _fit_working(bgr, alpha, limits.working_pixels)
    return Decoded(bgr, alpha, info, reduction, tuple(warnings))


# libjpeg warnings that it, and so every viewer, reads past without losing a pixel
_HARMLESS_JPEG = (
    "extraneous bytes before marker",
    "unknown JFIF revision",
    "Unknown Adobe color transform",
    "bad ICC marker",
)


def jpeg_pixels(data: bytes, info: ImageInfo, reduction: int, warnings: list[str]) -> np.ndarray:
    """Decode a JPEG with libjpeg's warnings counted; reduced 1/2, 1/4 or 1/8 in the DCT domain."""
    size = {"min_height": -(-info.height // reduction), "min_width": -(-info.width // reduction)}
    try:
        return simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True, **size)
    except ValueError as exc:
        said = str(exc)
    if not any(text in said for text in _HARMLESS_JPEG):
        if "Unsupported" in said or "not implemented" in said or "Sorry" in said:
            raise ImageRejected("unsupported_format", f"this kind of JPEG is not supported (libjpeg: {said})")
        raise ImageRejected("corrupt", f"the JPEG data is damaged (libjpeg: {said})")
    warnings.append(f"libjpeg: {said}")
    try:
        return simplejpeg.decode_jpeg(data, colorspace="BGR", strict=False, **size)
    except ValueError:
        pass  # the warning came while reading the header, where simplejpeg stops even when lenient
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED.get(reduction, cv2.IMREAD_COLOR) | _NO_EXIF)
    if img is None or img.size == 0:
        raise ImageRejected("corrupt", "the JPEG data could not be decoded")
    return img


def _opencv_pixels(data: bytes, info: ImageInfo) -> np.ndarray:
    if info.format == "webp" and len(data) < _OPENCV_WEBP_MIN:
        # OpenCV will not look at a WebP under 32 bytes; libwebp ignores what follows the RIFF data
        data += bytes(_OPENCV_WEBP_MIN - len(data))
    if info.has_alpha or info.bit_depth == 16:
        flags = cv2.IMREAD_UNCHANGED | _NO_EXIF
    else:
        flags = cv2.IMREAD_COLOR | _NO_EXIF
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE" in str(exc):  # OpenCV's own limit: the second line of defence held
            raise ImageRejected("too_many_pixels", "the image data is larger than its header says") from exc
        raise ImageRejected("corrupt", f"the {info.format.upper()} data could not be decoded") from exc
    if img is None or img.size == 0:
        raise ImageRejected("corrupt", f"the {info.format.upper()} data could not be decoded")
    return img


def _grey_with_key(grey: np.ndarray, key: int, depth: int) -> np.ndarray:
    """Grey plus alpha from a grey PNG's tRNS key (OpenCV returns such a PNG as one opaque channel)."""
    if depth < 8:  # libpng scales 1, 2 and 4-bit grey to 8 bits by replicating the bits
        key = key * 255 // ((1 << depth) - 1)
    alpha = np.where(grey == key, 0, np.iinfo(grey.dtype).max).astype(grey.dtype)
    return np.dstack([grey, alpha])


def to_bgr8(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit BGR and the alpha plane (None when there is none or it is all opaque) of a decoded image."""
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


def orient(
    bgr: np.ndarray, alpha: np.ndarray | None, orientation: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The image and its alpha as EXIF ``orientation`` says they are to be shown."""
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
