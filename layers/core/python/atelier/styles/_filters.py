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


def _part(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    return a[:, start:stop] if axis == 1 else a[start:stop]


def nc_pass(planes: list[np.ndarray], cost: np.ndarray, limit: float, axis: int, reach: int) -> list[np.ndarray]:
    """One normalised-convolution pass of the domain transform (Gastal & Oliveira) along ``axis``.

    Each output pixel is the mean of the pixels whose summed step cost from it stays within ``limit``, at
    most ``reach`` pixels to each side. ``cost[k]`` is the cost of the step into pixel k from pixel k-1
    along the axis (8-bit costs saturate at 255, so ``limit`` must then be below 255). Planes are float32
    or uint8, all of one shape and type, and come back in that type.
    """
    n = planes[0].shape[axis]
    floating = planes[0].dtype == np.float32
    acc_type = np.float32 if floating else np.uint16
    acc_depth = cv2.CV_32F if floating else cv2.CV_16U
    accs = [p.astype(acc_type) for p in planes]
    count = np.ones(planes[0].shape, acc_type)
    total = np.zeros(planes[0].shape, cost.dtype)
    for side in (1, -1):
        total.fill(0)
        for k in range(1, min(reach, n - 1) + 1):
            if side == 1:
                here, there, step = (0, n - k), (k, n), (k, n)
            else:
                here, there, step = (k, n), (0, n - k), (1, n - k + 1)
            run = _part(total, axis, *here)
            cv2.add(run, _part(cost, axis, *step), dst=run)
            mask = cv2.compare(run, limit, cv2.CMP_LE)
            if not cv2.countNonZero(mask):
                break  # costs only grow with distance, so no farther pixel can be inside either
            c = _part(count, axis, *here)
            cv2.add(c, 1, dst=c, mask=mask)
            for acc, p in zip(accs, planes, strict=True):
                a = _part(acc, axis, *here)
                cv2.add(a, _part(p, axis, *there), dst=a, mask=mask, dtype=acc_depth)
    depth = cv2.CV_32F if floating else cv2.CV_8U
    return [cv2.divide(acc, count, dtype=depth) for acc in accs]


def guided_coefficients(
    guide: np.ndarray, planes: list[np.ndarray], radius: int, eps: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """He et al.'s guided filter with a grey guide: per plane, ``a`` and ``b`` with output ``a * guide + b``."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    var_i = cv2.subtract(box(cv2.multiply(guide, guide)), cv2.multiply(mean_i, mean_i))
    denom = cv2.add(var_i, eps)
    a_planes, b_planes = [], []
    for p in planes:
        mean_p = box(p)
        cov = cv2.subtract(box(cv2.multiply(guide, p)), cv2.multiply(mean_i, mean_p))
        a = cv2.divide(cov, denom)
        b = cv2.subtract(mean_p, cv2.multiply(a, mean_i))
        a_planes.append(box(a))
        b_planes.append(box(b))
    return a_planes, b_planes


def upsample_rows(low: np.ndarray, height: int, width: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of ``low`` resized bilinearly to ``height x width`` (as cv2.resize would place them)."""
    lh, lw = low.shape[:2]
    sx, sy = lw / width, lh / height
    m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, (r0 + 0.5) * sy - 0.5]], np.float64)
    return cv2.warpAffine(
        low, m, (width, r1 - r0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def work_factor(height: int, width: int, pixels: int) -> int:
    """Integer reduction that brings an image to about ``pixels`` pixels (at least 1)."""
    return max(1, int(math.sqrt(height * width / pixels)))
