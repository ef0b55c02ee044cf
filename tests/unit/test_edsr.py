"""EDSR graph: EDSR-PyTorch names, receptive field (declared, graph-derived, measured), tiled inference."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import atelier  # noqa: F401  (sets OpenCV's decode limits before cv2 loads)
from atelier.inference import tiling, upscale
from atelier.inference.models import edsr

TOL = 1.0 / 255.0


def session_runner(model: onnx.ModelProto) -> tiling.RunTile:
    """An ONNX Runtime CPU session (2 threads) wrapped as a run_tile callable."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"input": np.ascontiguousarray(batch)})[0]


def whole(image: np.ndarray, run: tiling.RunTile) -> np.ndarray:
    """The model on the whole HWC image at once."""
    return run(image.transpose(2, 0, 1)[None].astype(np.float32))[0].transpose(1, 2, 0)


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 noise image: the hardest case for missing context."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth coloured blobs with edges, closer to a photo than noise."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3).astype(np.float32)
    return ((img - img.min()) * (255.0 / max(float(img.max() - img.min()), 1.0))).astype(np.uint8)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_initializer_names_are_edsr_pytorch_state_dict_keys(scale: int) -> None:
    model = edsr.build(scale)
    names = {init.name for init in model.graph.initializer}
    expected = {"sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"}
    expected |= {f"head.0.{p}" for p in ("weight", "bias")}
    expected |= {f"body.{i}.body.{j}.{p}" for i in range(16) for j in (0, 2) for p in ("weight", "bias")}
    expected |= {
        "body.16.weight",
        "body.16.bias",
        "tail.0.0.weight",
        "tail.0.0.bias",
        "tail.1.weight",
        "tail.1.bias",
    }
    if scale == 4:
        expected |= {"tail.0.2.weight", "tail.0.2.bias"}
    assert names == expected
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    assert shapes["tail.0.0.weight"] == ({2: 4, 3: 9, 4: 4}[scale] * 64, 64, 3, 3)
    assert shapes["tail.1.weight"] == (3, 64, 3, 3)
    sub = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}["sub_mean.bias"]
    np.testing.assert_allclose(sub, -255.0 * np.array([0.4488, 0.4371, 0.4040]), rtol=1e-6)
    onnx.checker.check_model(model)
    assert sum(int(np.prod(d)) for d in shapes.values()) > 1.3e6  # EDSR-baseline has about 1.4-1.6 M


def test_full_edsr_layout_uses_res_scale() -> None:
    full = edsr.FULL
    model = edsr.build(2, n_resblocks=full["n_resblocks"], n_feats=8, res_scale=full["res_scale"])  # narrow
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Mul") == 32 and "body.32.weight" in {i.name for i in model.graph.initializer}
    onnx.checker.check_model(model)


@pytest.mark.parametrize(
    ("n_resblocks", "scale"), [(16, 2), (16, 3), (16, 4), (32, 2), (32, 3), (32, 4), (1, 3)]
)
def test_declared_receptive_field_matches_the_graph(n_resblocks: int, scale: int) -> None:
    model = edsr.build(scale, n_resblocks=n_resblocks, n_feats=8)
    declared = edsr.receptive_field(n_resblocks, scale)
    assert declared == 2 * n_resblocks + 4
    assert edsr.graph_receptive_field(model) == declared
    assert edsr.graph_scale(model) == scale


def test_graph_walk_counts_strides_dilations_and_resize() -> None:
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.zeros((3, 3, 5, 5), np.float32), "w")
    scales = onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        h.make_node("Conv", ["x", "w"], ["a"], pads=[4, 4, 4, 4], dilations=[2, 2]),  # reach 4
        h.make_node("Conv", ["a", "w"], ["b"], pads=[2, 2, 2, 2], strides=[2, 2]),  # reach 2, then 1/2 res
        h.make_node("Resize", ["b", "", "scales"], ["y"], mode="nearest"),  # back to full res
    ]
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", 1, [1, 3, 64, 64])],
        [h.make_tensor_value_info("y", 1, None)],
        [w, scales],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    assert edsr.graph_scale(model) == 1
    # y[p] <- b[p // 2] <- a[2 (p // 2) - 2 .. 2 (p // 2) + 2] <- x[.. - 4 .. + 4]: p = 2k + 1 reaches 7.
    assert edsr.graph_receptive_field(model) == 7


@pytest.mark.parametrize(("n_resblocks", "n_feats", "scale"), [(1, 8, 3), (2, 16, 2)])
def test_impulse_response_reaches_exactly_the_declared_receptive_field(
    n_resblocks: int, n_feats: int, scale: int
) -> None:
    run = session_runner(edsr.build(scale, n_resblocks=n_resblocks, n_feats=n_feats))
    flat = np.full((1, 3, 41, 41), 128.0, np.float32)
    poked = flat.copy()
    poked[0, :, 20, 20] += 100.0
    changed = np.abs(run(poked) - run(flat)).max(axis=(0, 1)) > 0
    ys, xs = np.nonzero(changed)
    reach = max(
        20 - ys.min() // scale, ys.max() // scale - 20, 20 - xs.min() // scale, xs.max() // scale - 20
    )
    assert reach == edsr.receptive_field(n_resblocks, scale)


@pytest.mark.parametrize(
    ("n_resblocks", "n_feats", "scale", "size", "tile", "batch"),
    [
        (2, 16, 2, (37, 53), 16, 4),  # a narrow dev graph: small halo, many real tiles
        (16, 64, 3, (97, 61), 16, 3),  # EDSR-baseline x3: halo 36, so the windows are 88 px
    ],
)
def test_tiled_edsr_equals_whole_image_on_ort_cpu(
    n_resblocks: int, n_feats: int, scale: int, size: tuple[int, int], tile: int, batch: int
) -> None:
    run = session_runner(edsr.build(scale, n_resblocks=n_resblocks, n_feats=n_feats))
    image = noise(*size)
    halo = edsr.receptive_field(n_resblocks, scale)
    assert tiling.count_tiles(*size, tile, halo) > 1
    tiled = tiling.upscale_tiled(image, run, scale=scale, tile=tile, halo=halo, batch=batch)
    assert np.abs(tiled - whole(image, run)).max() <= TOL


def test_edsr_with_halo_one_short_of_its_receptive_field_differs() -> None:
    run = session_runner(edsr.build(3, n_resblocks=1, n_feats=8))
    image = noise(37, 53, seed=1)
    halo = edsr.receptive_field(1, 3)
    reference = whole(image, run)
    exact = tiling.upscale_tiled(image, run, scale=3, tile=8, halo=halo)
    short = tiling.upscale_tiled(image, run, scale=3, tile=8, halo=halo - 1)
    assert np.abs(exact - reference).max() <= TOL
    assert np.abs(short - reference).max() > TOL


def test_seeded_weights_give_a_bilinear_like_upscale() -> None:
    image = photo_like(48, 40)
    out = whole(image, session_runner(edsr.build(2, n_resblocks=4, n_feats=16)))
    bilinear = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    inner = (out - bilinear)[8:-8, 8:-8]
    psnr = 10 * np.log10(255.0**2 / np.mean(inner**2))
    assert 30.0 < psnr < 70.0, f"{psnr:.1f} dB: close to bilinear, with some texture of its own"


def test_weights_are_seeded_and_can_be_supplied_by_name() -> None:
    a = edsr.build(2, n_resblocks=2, n_feats=8, seed=3)
    b = edsr.build(2, n_resblocks=2, n_feats=8, seed=3)
    c = edsr.build(2, n_resblocks=2, n_feats=8, seed=4)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.graph.initializer[4].raw_data != c.graph.initializer[4].raw_data
    weights = edsr.random_weights(2, n_resblocks=2, n_feats=8, seed=3)
    weights.pop("sub_mean.weight"), weights.pop("sub_mean.bias")  # MeanShift is filled in when absent
    supplied = edsr.build(2, n_resblocks=2, n_feats=8, weights=weights)
    assert [i.raw_data for i in supplied.graph.initializer] == [i.raw_data for i in a.graph.initializer]
    assert {p.key: p.value for p in supplied.metadata_props}["weights"] == "supplied"
    weights.pop("body.1.body.2.weight")
    with pytest.raises(ValueError, match="lack 1 parameters"):
        edsr.build(2, n_resblocks=2, n_feats=8, weights=weights)
    weights["body.1.body.2.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    with pytest.raises(ValueError, match="expected shape"):
        edsr.build(2, n_resblocks=2, n_feats=8, weights=weights)


@pytest.fixture(scope="module")
def small_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow EDSR x2 on disk, as the Upscaler would load a real one."""
    path = tmp_path_factory.mktemp("models") / "edsr_r2f16x2.onnx"
    onnx.save(edsr.build(2, n_resblocks=2, n_feats=16), str(path))
    return path


def test_upscaler_on_cpu_tiled_matches_whole_and_keeps_bgr(small_model_path: Path) -> None:
    upscaler = upscale.Upscaler(small_model_path, provider="cpu", threads=2)
    assert upscaler.providers == ["CPUExecutionProvider"]
    assert (upscaler.scale, upscaler.halo) == (2, 8)
    bgr = photo_like(45, 38)
    whole_img = upscaler.upscale(bgr, tile=0, dtype=np.float32)
    tiled = upscaler.upscale(bgr, tile=12, batch=2, dtype=np.float32)
    assert tiled.shape == (90, 76, 3)
    assert np.abs(tiled - whole_img).max() <= TOL
    rgb_out = whole(np.ascontiguousarray(bgr[:, :, ::-1]), upscaler.run_batch)
    np.testing.assert_allclose(whole_img, rgb_out[:, :, ::-1], atol=TOL)
    as_uint8 = upscaler.upscale(bgr, tile=12)
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8, np.clip(np.rint(tiled), 0, 255).astype(np.uint8))


def test_upscaler_streams_row_bands(small_model_path: Path) -> None:
    upscaler = upscale.Upscaler(small_model_path, provider="cpu", threads=2)
    bgr = photo_like(50, 31, seed=2)
    bands = list(upscaler.iter_bands(bgr, tile=16))
    assert len(bands) > 1 and [b.top for b in bands][:2] == [0, bands[0].pixels.shape[0]]
    np.testing.assert_array_equal(np.concatenate([b.pixels for b in bands]), upscaler.upscale(bgr, tile=16))


def test_provider_choice_falls_back_to_cpu_and_refuses_missing_ones() -> None:
    have = ort.get_available_providers()
    assert upscale.pick_provider("auto") == ("cuda" if "CUDAExecutionProvider" in have else "cpu")
    assert upscale.pick_provider("cpu") == "cpu"
    if "CUDAExecutionProvider" not in have:
        with pytest.raises(RuntimeError, match="cuda requested"):
            upscale.pick_provider("cuda")


def test_a_session_that_fell_back_to_the_cpu_runs_on_the_cpu(
    small_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU build of ONNX Runtime on a machine whose GPU it cannot use lists CUDA and gives a CPU session.

    Here the CPU build is told it has CUDA: 'auto' asks for CUDA and fp16, ONNX Runtime falls back to the
    CPU, and the Upscaler then runs what it really got (fp32 on the CPU, no device buffers) and renders.
    """
    monkeypatch.setattr(
        upscale, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert upscale.pick_provider("auto") == "cuda"
    upscaler = upscale.Upscaler(small_model_path, provider="auto", threads=2)
    assert (upscaler.provider, upscaler.fp16, upscaler.providers) == ("cpu", False, ["CPUExecutionProvider"])
    bgr = photo_like(21, 17, seed=3)
    reference = upscale.Upscaler(small_model_path, provider="cpu", threads=2).upscale(bgr, tile=0)
    np.testing.assert_array_equal(upscaler.upscale(bgr, tile=0), reference)
