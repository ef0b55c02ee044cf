"""Seam-free tiled inference for fully convolutional upscalers: a pure function over numpy arrays.

The image is cut into *cores* that partition it. Each core is run inside a *window* that adds a halo of
at least the model's receptive field on every side that is not the image border, so each output pixel
comes from exactly one tile, computed with all the context it would see in whole-image inference. Where
a window reaches the image border it stops there, and the model's own zero padding applies exactly as in
whole-image inference. Nothing is blended, so there is nothing to leave a seam.

All windows of one image have the same shape (a window near the border is shifted inwards rather than
cut short), so tiles stack into full NCHW batches without padding. Only one batch of windows is ever
handed to ``run_tile``: the whole image never goes to the device at once. Output is written tile by tile
into a caller's array (which may be an ``np.memmap``) or assembled into row bands and yielded, so memory
is bounded by the tile, the batch and one band, not by the image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

RunTile = Callable[[np.ndarray], np.ndarray]
"""Maps a float32 NCHW batch (N, C, h, w) to its upscaled float32 batch (N, C', h*scale, w*scale)."""


@dataclass(frozen=True)
class Tile:
    """One core (the input pixels this tile answers for) and the window run to compute it."""

    row: int
    col: int
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 in input pixels
    window: tuple[int, int, int, int]


class Band(NamedTuple):
    """A horizontal band of output rows: its first output row and its pixels (HWC)."""

    top: int
    pixels: np.ndarray


@dataclass(frozen=True)
class TileChoice:
    """Tile side (core, input pixels) and how many windows to run per call."""

    tile: int
    batch: int


CPU_DEFAULT = TileChoice(tile=256, batch=1)
"""On the CPU a batch buys nothing and a large core keeps the halo overhead low."""


def split_axis(length: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Cut one axis into cores and equal windows of at most tile + 2 halo: (core0, core1, win0, win1)."""
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    if tile <= 0 or tile + 2 * halo >= length:
        return [(0, length, 0, length)]  # a window would span the axis anyway: one core, no repeated work
    count = math.ceil(length / tile)
    bounds = [(k * length) // count for k in range(count + 1)]  # even cores, each at most `tile`
    window = min(length, tile + 2 * halo)
    spans = []
    for c0, c1 in itertools.pairwise(bounds):
        w0 = min(max(c0 - halo, 0), length - window)
        spans.append((c0, c1, w0, w0 + window))
    return spans


def iter_tiles(height: int, width: int, tile: int, halo: int) -> Iterator[Tile]:
    """The tiles of an image in raster order, made as needed; ``tile <= 0`` means the whole image."""
    rows = split_axis(height, tile, halo)
    cols = split_axis(width, tile, halo)
    for r, (y0, y1, wy0, wy1) in enumerate(rows):
        for c, (x0, x1, wx0, wx1) in enumerate(cols):
            yield Tile(r, c, (y0, y1, x0, x1), (wy0, wy1, wx0, wx1))


def plan_tiles(height: int, width: int, tile: int, halo: int) -> list[Tile]:
    """All tiles of an image in raster order, as a list."""
    return list(iter_tiles(height, width, tile, halo))


def count_tiles(height: int, width: int, tile: int, halo: int) -> int:
    """How many tiles an image is cut into."""
    return len(split_axis(height, tile, halo)) * len(split_axis(width, tile, halo))


def _check_image(image: np.ndarray) -> None:
    """Reject anything but an HWC array."""
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an HWC image, got shape {image.shape}")


def _run_batches(
    image: np.ndarray, run_tile: RunTile, scale: int, tile: int, halo: int, batch: int
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Run the windows in batches; yield each tile with its upscaled core as a float32 HWC view."""
    _check_image(image)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    height, width, channels = image.shape
    tiles = iter_tiles(height, width, tile, halo)
    first = next(tiles)
    win_h, win_w = first.window[1] - first.window[0], first.window[3] - first.window[2]
    buf = np.empty((min(batch, count_tiles(height, width, tile, halo)), channels, win_h, win_w), np.float32)
    pending: list[Tile] = [first]
    for t in tiles:
        if len(pending) == batch:
            yield from _run_group(image, run_tile, scale, pending, buf)
            pending = []
        pending.append(t)
    yield from _run_group(image, run_tile, scale, pending, buf)


def _run_group(
    image: np.ndarray, run_tile: RunTile, scale: int, group: list[Tile], buf: np.ndarray
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Stack one group of equally sized windows into the batch buffer, run it, and yield the cores."""
    win_h, win_w = buf.shape[2], buf.shape[3]
    for i, t in enumerate(group):
        y0, y1, x0, x1 = t.window
        buf[i] = image[y0:y1, x0:x1].transpose(2, 0, 1)  # copies (and converts) one window only
    result = run_tile(buf[: len(group)])
    want = (len(group), win_h * scale, win_w * scale)
    got = np.shape(result)
    if len(got) != 4 or (got[0], got[2], got[3]) != want:
        raise ValueError(f"run_tile returned shape {got}; expected (N, C, h, w) = {want} at scale {scale}")
    for i, t in enumerate(group):
        y0, y1, x0, x1 = t.core
        oy, ox = (y0 - t.window[0]) * scale, (x0 - t.window[2]) * scale
        core = result[i, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale]
        yield t, core.transpose(1, 2, 0)


def _store(dst: np.ndarray, src: np.ndarray) -> None:
    """Write float pixels into dst, rounding and clamping when dst is uint8."""
    if dst.dtype == np.uint8:
        dst[...] = np.clip(np.rint(src), 0, 255)
    else:
        dst[...] = src


def upscale_tiled(
    image: np.ndarray,
    run_tile: RunTile,
    *,
    scale: int,
    tile: int,
    halo: int,
    batch: int = 1,
    out: np.ndarray | None = None,
    out_channels: int | None = None,
    dtype: type[np.generic] | np.dtype = np.float32,
) -> np.ndarray:
    """Upscale an HWC image tile by tile into ``out`` (allocated if None; may be a memmap or a view)."""
    _check_image(image)
    height, width, channels = image.shape
    shape = (height * scale, width * scale, out_channels or channels)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; expected {shape}")
    for t, core in _run_batches(image, run_tile, scale, tile, halo, batch):
        y0, y1, x0, x1 = t.core
        _store(out[y0 * scale : y1 * scale, x0 * scale : x1 * scale], core)
    return out


def iter_bands(
    image: np.ndarray,
    run_tile: RunTile,
    *,
    scale: int,
    tile: int,
    halo: int,
    batch: int = 1,
    out_channels: int | None = None,
    dtype: type[np.generic] | np.dtype = np.float32,
) -> Iterator[Band]:
    """Yield the upscaled image as row bands, top to bottom, each as soon as its last tile is done.

    Memory: the band being filled plus whatever bands the consumer still holds.
    """
    _check_image(image)
    height, width, channels = image.shape
    rows = split_axis(height, tile, halo)
    ncols = len(split_axis(width, tile, halo))
    pending: dict[int, tuple[np.ndarray, int]] = {}  # band row -> (pixels, tiles still missing)
    next_row = 0
    for t, core in _run_batches(image, run_tile, scale, tile, halo, batch):
        if t.row not in pending:
            y0, y1 = rows[t.row][:2]
            band = np.empty(((y1 - y0) * scale, width * scale, out_channels or channels), dtype=dtype)
            pending[t.row] = (band, ncols)
        band, missing = pending[t.row]
        x0, x1 = t.core[2] * scale, t.core[3] * scale
        _store(band[:, x0:x1], core)
        pending[t.row] = (band, missing - 1)
        while next_row in pending and pending[next_row][1] == 0:
            next_row += 1
            # Hand the band over without keeping a reference: the consumer alone decides its lifetime.
            yield Band(rows[next_row - 1][0] * scale, pending.pop(next_row - 1)[0])


def choose_tiling(
    budget_bytes: int,
    bytes_per_pixel: int,
    halo: int,
    *,
    max_tile: int = 512,
    max_batch: int = 16,
    multiple: int = 16,
    image_shape: tuple[int, int] | None = None,
) -> TileChoice:
    """Pick the largest core whose window fits the memory budget, then as many windows per batch as fit."""
    if budget_bytes <= 0 or bytes_per_pixel <= 0:
        raise ValueError("budget_bytes and bytes_per_pixel must be positive")

    def window_bytes(core: int) -> int:
        return (core + 2 * halo) ** 2 * bytes_per_pixel

    tile = max_tile - max_tile % multiple
    while tile > multiple and window_bytes(tile) > budget_bytes:
        tile -= multiple
    if window_bytes(tile) > budget_bytes:
        raise ValueError(
            f"a {budget_bytes} B budget cannot hold even a {tile}+2x{halo} px window "
            f"at {bytes_per_pixel} B/px"
        )
    if image_shape is not None:
        tile = min(tile, max(image_shape))  # no core larger than the image
    batch = max(1, min(max_batch, budget_bytes // window_bytes(tile)))
    if image_shape is not None:
        batch = min(batch, count_tiles(image_shape[0], image_shape[1], tile, halo))
    return TileChoice(tile=tile, batch=int(batch))
