"""Shared pieces of the CPU styles: resolution scale, strip-parallel work, guided upsampling, resizing."""

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
    if _POOL is None or n != _POOL_SIZE:
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="atelier-style")
        _POOL_SIZE = n
    for f in [_POOL.submit(fn, a, b) for a, b in spans]:
        f.result()


def _part(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    return a[:, start:stop] if axis == 1 else a[start:stop]


def nc_pass(
    planes: list[np.ndarray], cost: np.ndarray, limit: float, axis: int, reach: int
) -> list[np.ndarray]:
    """One normalised-convolution pass of the domain transform (Gastal & Oliveira) along ``axis``.

    Each output pixel is the mean of the pixels whose summed step cost from it stays within ``limit``, at
    most ``reach`` pixels to each side. ``cost[k]`` is the cost of the step into pixel k from pixel k-1
    along the axis. Planes and costs are both float32, or both uint16 (costs then saturate at 65535, so
    ``limit`` must be below it); the planes come back in their own type.
    """
    shape = planes[0].shape
    n = shape[axis]
    floating = planes[0].dtype == np.float32
    dtype = np.float32 if floating else np.uint16
    on = 1.0 if floating else 65535
    accs = [p.copy() for p in planes]
    count = np.ones(shape, dtype)
    total = scratch("nc.total", shape, dtype)
    mask = scratch("nc.mask", shape, dtype)
    tmp = scratch("nc.tmp", shape, dtype)
    for side in (1, -1):
        total.fill(0)
        for k in range(1, min(reach, n - 1) + 1):
            if side == 1:
                here, there, step = (0, n - k), (k, n), (k, n)
            else:
                here, there, step = (k, n), (0, n - k), (1, n - k + 1)
            run = _part(total, axis, *here)
            cv2.add(run, _part(cost, axis, *step), dst=run)
            m = _part(mask, axis, *here)
            cv2.threshold(run, limit, on, cv2.THRESH_BINARY_INV, dst=m)
            if not cv2.countNonZero(m):
                break  # costs only grow with distance, so no farther pixel can be inside either
            c = _part(count, axis, *here)
            if floating:
                cv2.add(c, m, dst=c)
                for acc, p in zip(accs, planes, strict=True):
                    cv2.accumulateProduct(_part(p, axis, *there), m, _part(acc, axis, *here))
            else:
                t = _part(tmp, axis, *here)
                cv2.threshold(run, limit, 1, cv2.THRESH_BINARY_INV, dst=t)
                cv2.add(c, t, dst=c)
                for acc, p in zip(accs, planes, strict=True):
                    cv2.bitwise_and(_part(p, axis, *there), m, dst=t)
                    a = _part(acc, axis, *here)
                    cv2.add(a, t, dst=a)
    for acc in accs:
        cv2.divide(acc, count, dst=acc)
    return accs


def guided_coefficients(
    guide: np.ndarray, planes: list[np.ndarray], radius: int, eps: float, a_limit: float | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """He et al.'s guided filter with a grey guide: per plane, ``a`` and ``b`` giving ``a * guide + b``.

    ``a_limit`` bounds the gain ``a`` to +-a_limit before it is averaged, so a plane never follows the
    guide more steeply than that.
    """
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    var_i = cv2.subtract(box(cv2.multiply(guide, guide)), cv2.multiply(mean_i, mean_i))
    denom = np.add(var_i, np.float32(eps))
    a_planes, b_planes = [], []
    for p in planes:
        mean_p = box(p)
        cov = cv2.subtract(box(cv2.multiply(guide, p)), cv2.multiply(mean_i, mean_p))
        a = cv2.divide(cov, denom)
        if a_limit is not None:
            np.clip(a, -a_limit, a_limit, out=a)
        b = cv2.subtract(mean_p, cv2.multiply(a, mean_i))
        a_planes.append(box(a))
        b_planes.append(box(b))
    return a_planes, b_planes


def area_down(img: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (partial blocks at the right and bottom edges included)."""
    if factor == 1:
        return img.copy()
    h, w = img.shape[:2]
    fh, fw = h // factor, w // factor
    lh, lw = -(-h // factor), -(-w // factor)
    out = np.empty((lh, lw, *img.shape[2:]), img.dtype)
    # INTER_AREA has a fast path only for whole-number ratios, so the edge remainders are done apart.
    for ys, ye, oy in ((0, fh * factor, slice(0, fh)), (fh * factor, h, slice(fh, lh))):
        for xs, xe, ox in ((0, fw * factor, slice(0, fw)), (fw * factor, w, slice(fw, lw))):
            if ye > ys and xe > xs:
                size = (ox.stop - ox.start, oy.stop - oy.start)
                out[oy, ox] = cv2.resize(img[ys:ye, xs:xe], size, interpolation=cv2.INTER_AREA).reshape(
                    out[oy, ox].shape
                )
    return out


def up_rows(low: np.ndarray, factor: int, r0: int, r1: int, width: int) -> np.ndarray:
    """Rows ``r0:r1`` (and the first ``width`` columns) of ``low`` enlarged ``factor`` times bilinearly."""
    lh = low.shape[0]
    la = max(0, r0 // factor - 1)
    lb = min(lh, (r1 - 1) // factor + 2)
    block = low[la:lb]
    size = (block.shape[1] * factor, (lb - la) * factor)
    up = cv2.resize(block, size, interpolation=cv2.INTER_LINEAR)
    return up[r0 - la * factor : r1 - la * factor, :width]


def work_factor(height: int, width: int, pixels: int) -> int:
    """Integer reduction that brings an image to about ``pixels`` pixels (at least 1)."""
    return max(1, round(math.sqrt(height * width / pixels)))
