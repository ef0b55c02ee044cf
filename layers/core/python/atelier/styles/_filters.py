"""Shared pieces of the CPU styles: resolution scale, neighbour differences, guided upsampling."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

REFERENCE_PIXELS = 3072 * 2048


def scale(height: int, width: int) -> float:
    """Linear size relative to the 3072x2048 reference, where spatial parameters are given in pixels."""
    return math.sqrt(max(1, height * width) / REFERENCE_PIXELS)


def steps_along(bgr: np.ndarray, axis: int) -> np.ndarray:
    """Sum over B, G, R of |difference to the previous pixel| along ``axis``, saturated at 255.

    Element k along the axis is the step from pixel k-1 to pixel k; the first is 0.
    """
    h, w = bgr.shape[:2]
    out = np.zeros((h, w), np.uint8)
    if bgr.shape[axis] < 2:
        return out
    tail = out[:, 1:] if axis == 1 else out[1:]
    acc = None
    for p in cv2.split(bgr):
        d = cv2.absdiff(p[:, 1:], p[:, :-1]) if axis == 1 else cv2.absdiff(p[1:], p[:-1])
        acc = d if acc is None else cv2.add(acc, d, dst=acc)
    tail[...] = acc
    return out


def add_offset(bgr: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``bgr + offset`` per channel, saturated to 8 bits; ``offset`` is a single int16 plane."""
    out = [cv2.add(p, offset, dtype=cv2.CV_8U) for p in cv2.split(bgr)]
    return cv2.merge(out)


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_LOCAL = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: type[np.generic] | np.dtype[np.generic]) -> np.ndarray:
    """A per-thread reusable buffer: fresh large arrays cost page faults on every strip."""
    cache: dict[str, np.ndarray] | None = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    buf = cache.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = cache[name] = np.empty(shape, dtype)
    return buf


def workers() -> int:
    """Threads for strip-parallel work: OpenCV's own thread count (cv2.setNumThreads), at least 1."""
    return max(1, cv2.getNumThreads())


def parallel(fn: Callable[[int, int], None], total: int, chunk: int) -> None:
    """Call ``fn(start, stop)`` over ``range(total)`` in chunks, on a small thread pool.

    OpenCV releases the GIL, so strips run side by side; each strip stays in cache between operations.
    """
    spans = [(i, min(total, i + chunk)) for i in range(0, total, chunk)]
    n = workers()
    if n == 1 or len(spans) == 1:
        for a, b in spans:
            fn(a, b)
        return
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE != n:
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="atelier-style")
        _POOL_SIZE = n
    for f in [_POOL.submit(fn, a, b) for a, b in spans]:
        f.result()
