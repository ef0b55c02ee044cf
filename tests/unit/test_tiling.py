"""Tiling: seam-free stitching, halo sufficiency, batching, streaming and bounded memory, on a fake model."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from atelier.inference import tiling

TOL = 1.0 / 255.0


def box_upscaler(scale: int, radius: int) -> tiling.RunTile:
    """A cheap stand-in model: zero-padded box filter of the given radius, then nearest upscaling."""

    def run(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float64)
        for axis in (2, 3):
            pad = [(0, 0)] * 4
            pad[axis] = (radius + 1, radius)
            c = np.cumsum(np.pad(x, pad), axis=axis)
            n = x.shape[axis]
            hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
            lo = np.take(c, np.arange(0, n), axis=axis)
            x = hi - lo
        x /= (2 * radius + 1) ** 2
        return np.repeat(np.repeat(x, scale, axis=2), scale, axis=3).astype(np.float32)

    return run


def whole(image: np.ndarray, run: tiling.RunTile) -> np.ndarray:
    """Reference: the model on the whole image at once, as HWC float32."""
    return run(image.transpose(2, 0, 1)[None].astype(np.float32))[0].transpose(1, 2, 0)


def random_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A noisy uint8 image: every pixel differs, so any missing context shows."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


@pytest.mark.parametrize("length", [1, 2, 7, 16, 17, 37, 53, 100, 257])
@pytest.mark.parametrize("tile", [0, 1, 5, 16, 64])
@pytest.mark.parametrize("halo", [0, 3, 8])
def test_split_axis_partitions_and_gives_every_core_its_halo(length: int, tile: int, halo: int) -> None:
    spans = tiling.split_axis(length, tile, halo)
    cores = [(c0, c1) for c0, c1, _, _ in spans]
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cores)), "cores must partition the axis"
    assert len({w1 - w0 for _, _, w0, w1 in spans}) == 1, "all windows must be the same length"
    for c0, c1, w0, w1 in spans:
        assert 0 <= w0 <= c0 < c1 <= w1 <= length
        if tile > 0:
            assert w1 - w0 <= tile + 2 * halo, "a window may not exceed the tile and its halo"
            assert len(spans) == 1 or c1 - c0 <= tile
        assert w0 == 0 or c0 - w0 >= halo, "context before the core is short of the halo"
        assert w1 == length or w1 - c1 >= halo, "context after the core is short of the halo"


@pytest.mark.parametrize(
    ("h", "w", "tile", "scale", "radius", "batch"),
    [
        (37, 53, 16, 2, 3, 1),  # odd sizes, several tiles
        (37, 53, 16, 3, 5, 4),  # batched, last batch shorter
        (10, 7, 16, 2, 3, 2),  # smaller than one tile
        (5, 300, 8, 4, 2, 64),  # a strip, one batch holds every window
        (64, 64, 16, 1, 4, 3),  # scale 1, exact multiple of the tile
        (33, 31, 1, 2, 2, 5),  # one-pixel cores
    ],
)
def test_stitched_output_equals_whole_image(
    h: int, w: int, tile: int, scale: int, radius: int, batch: int
) -> None:
    image = random_image(h, w)
    run = box_upscaler(scale, radius)
    tiled = tiling.upscale_tiled(image, run, scale=scale, tile=tile, halo=radius, batch=batch)
    assert tiled.shape == (h * scale, w * scale, 3)
    assert np.abs(tiled - whole(image, run)).max() <= TOL


def test_halo_one_smaller_than_receptive_field_breaks_equality() -> None:
    image = random_image(37, 53)
    run = box_upscaler(2, 4)
    ok = tiling.upscale_tiled(image, run, scale=2, tile=16, halo=4)
    short = tiling.upscale_tiled(image, run, scale=2, tile=16, halo=3)
    reference = whole(image, run)
    assert np.abs(ok - reference).max() <= TOL
    assert np.abs(short - reference).max() > 1.0, "a halo below the receptive field must leave seams"


def test_run_tile_only_ever_sees_one_batch_of_windows() -> None:
    image = random_image(100, 120)
    run = box_upscaler(2, 3)
    seen: list[tuple[int, ...]] = []

    def spy(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return run(batch)

    tiling.upscale_tiled(image, spy, scale=2, tile=32, halo=3, batch=4)
    assert len(seen) == 4 * 4 // 4  # 16 tiles, 4 per batch
    assert all(s == (4, 3, 38, 38) for s in seen)


def test_bands_arrive_in_order_before_the_image_is_done_and_match_the_whole() -> None:
    image = random_image(70, 45)
    run = box_upscaler(3, 2)
    calls = 0

    def counting(batch: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        return run(batch)

    bands = []
    calls_at_first_band = None
    for band in tiling.iter_bands(image, counting, scale=3, tile=16, halo=2, batch=2, dtype=np.float32):
        if calls_at_first_band is None:
            calls_at_first_band = calls
        bands.append(band)
    tops = [b.top for b in bands]
    assert tops == sorted(tops) and tops[0] == 0
    assert all(b.top + b.pixels.shape[0] == n.top for b, n in itertools.pairwise(bands))
    assert calls_at_first_band is not None and calls_at_first_band < calls
    stitched = np.concatenate([b.pixels for b in bands])
    assert np.abs(stitched - whole(image, run)).max() <= TOL


def test_uint8_output_is_rounded_and_clamped() -> None:
    image = random_image(20, 20)

    def overshoot(batch: np.ndarray) -> np.ndarray:
        return batch * 1.5 - 60.0  # values below 0 and above 255

    out = tiling.upscale_tiled(image, overshoot, scale=1, tile=8, halo=0, dtype=np.uint8)
    expected = np.clip(np.rint(image.astype(np.float32) * 1.5 - 60.0), 0, 255).astype(np.uint8)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_writes_into_a_memmap(tmp_path: Path) -> None:
    image = random_image(41, 29)
    run = box_upscaler(2, 2)
    out = np.lib.format.open_memmap(str(tmp_path / "out.npy"), mode="w+", dtype=np.float32, shape=(82, 58, 3))
    result = tiling.upscale_tiled(image, run, scale=2, tile=16, halo=2, out=out)
    assert result is out
    out.flush()
    assert np.abs(np.load(tmp_path / "out.npy") - whole(image, run)).max() <= TOL


def test_wrong_model_output_shape_is_reported() -> None:
    image = random_image(20, 20)
    with pytest.raises(ValueError, match="run_tile returned shape"):
        tiling.upscale_tiled(image, box_upscaler(2, 1), scale=3, tile=8, halo=1)


def test_choose_tiling_fits_the_budget_and_grows_with_it() -> None:
    halo, per_px = 36, 2048
    previous = tiling.TileChoice(0, 0)
    for budget_mb in (64, 256, 1024, 4096):
        budget = budget_mb * 1024 * 1024
        choice = tiling.choose_tiling(budget, per_px, halo)
        assert choice.batch * (choice.tile + 2 * halo) ** 2 * per_px <= budget
        assert (choice.tile, choice.batch) >= (previous.tile, previous.batch)
        previous = choice
    assert tiling.choose_tiling(4096 * 1024 * 1024, per_px, halo, image_shape=(100, 80)) == tiling.TileChoice(
        100, 1
    )
    with pytest.raises(ValueError, match="cannot hold"):
        tiling.choose_tiling(1024 * 1024, per_px, halo)


def _traced_peak(fn: object) -> int:
    """Peak bytes allocated (beyond what existed before) while calling fn."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_peak_memory_is_bounded_by_the_tile_not_the_image() -> None:
    scale, tile, halo = 2, 128, 4
    run = box_upscaler(scale, halo)
    peaks: dict[int, tuple[int, int]] = {}
    for side in (1024, 4096):  # 1 MP and 16 MP
        image = random_image(side, side, seed=side)
        out = np.empty((side * scale, side * scale, 3), dtype=np.uint8)  # the output buffer itself
        into = _traced_peak(
            lambda image=image, out=out: tiling.upscale_tiled(
                image, run, scale=scale, tile=tile, halo=halo, batch=2, out=out
            )
        )
        del out
        band_bytes = tile * scale * side * scale * 3  # one band of uint8 output rows

        def drain(image: np.ndarray = image) -> None:
            for band in tiling.iter_bands(
                image, run, scale=scale, tile=tile, halo=halo, batch=2, dtype=np.uint8
            ):
                del band  # an encoder that has written the rows lets them go

        peaks[side] = (into, _traced_peak(drain) - band_bytes)
    small, large = peaks[1024], peaks[4096]
    slack = 256 * 1024
    assert small[0] > 0 and small[1] > 0
    assert large[0] <= small[0] + slack, f"writing into out: {large[0]} B at 16 MP vs {small[0]} B at 1 MP"
    assert large[1] <= small[1] + slack, f"streaming bands: {large[1]} B at 16 MP vs {small[1]} B at 1 MP"
