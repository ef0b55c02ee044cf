"""Checkpoint reading without torch, graph building by state-dict names, build-dev determinism."""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from atelier.inference import models
from atelier_dev.models import animegan, cli, convert


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(s.run(None, {"input": x})[0])


@pytest.mark.parametrize("legacy", [False, True])
def test_state_dict_round_trip(tmp_path, legacy: bool) -> None:
    weights = animegan.seeded_weights(5)
    weights["extra.long"] = np.arange(6, dtype=np.int64).reshape(2, 3)
    path = tmp_path / "w.pt"
    convert.write_state_dict(path, weights, legacy=legacy)
    back = convert.read_state_dict(path)
    assert list(back) == list(weights)
    for key, value in weights.items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key


def test_unpickler_refuses_arbitrary_globals(tmp_path) -> None:
    buf = io.BytesIO()
    pickle.dump({"x": print}, buf, protocol=2)
    data = buf.getvalue()
    with pytest.raises(convert.UnsafePickle):
        convert._RestrictedUnpickler(data).load()


def test_converted_graph_uses_the_checkpoint_weights(tmp_path) -> None:
    weights = animegan.seeded_weights(11)
    pt = tmp_path / "face.pt"
    convert.write_state_dict(pt, weights)
    entry = models.get("face_paint_512_v2")
    out = convert.convert(entry, pt, tmp_path / "out")
    model = onnx.load(str(out["fp32"]))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for key, value in weights.items():
        assert np.array_equal(inits[key], value), key
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["trained"] == "true"
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    direct = _run(animegan.build(weights), x)
    assert np.allclose(_run(model, x), direct, atol=1e-6)


def test_wrong_state_dict_is_rejected() -> None:
    weights = animegan.seeded_weights(0)
    weights.pop("out_layer.0.weight")
    with pytest.raises(ValueError, match="missing"):
        animegan.build(weights)


def test_formulations_agree_and_layouts_match() -> None:
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 48, 80)).astype(np.float32)
    ref = _run(animegan.build(seed=2, formulation="reference"), x)
    fast = _run(animegan.build(seed=2, formulation="fast"), x)
    nhwc = _run(animegan.build(seed=2, layout="NHWC"), np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    assert ref.shape == (1, 3, 48, 80)
    assert np.abs(ref - fast).max() < 1e-3
    assert np.abs(nhwc.transpose(0, 3, 1, 2) - fast).max() < 1e-5
    assert float(ref.min()) >= -1.0 and float(ref.max()) <= 1.0


@pytest.mark.parametrize("shape", [(33, 47), (64, 36), (36, 200), (180, 32)])
def test_fast_borders_match_reflection_padding(shape: tuple[int, int]) -> None:
    # fast: dense stride-1 convolutions pad with zeros and rewrite their borders from reflected strips,
    # and the upsampling convolutions resize channel groups; all of it must equal the reference's
    # Pad(reflect) + Conv and Resize(align_corners), at odd sizes, sizes that do not halve, thin images
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, *shape)).astype(np.float32)
    ref = _run(animegan.build(seed=1, formulation="reference"), x)
    assert np.abs(ref - _run(animegan.build(seed=1), x)).max() < 1e-4


def test_fast_graph_pads_only_strips_and_small_convolutions() -> None:
    # No padded copy of a dense stride-1 convolution's input: every Pad reads a border strip (a Slice),
    # or feeds a depthwise or stride-2 convolution; the borders are written back in place
    fast = animegan.build(seed=0)
    producer = {o: n for n in fast.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in fast.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
        return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

    pads = [n for n in fast.graph.node if n.op_type == "Pad"]
    assert pads
    for pad in pads:
        if producer[pad.input[0]].op_type == "Slice":
            continue
        (conv,) = consumers[pad.output[0]]
        assert conv.op_type == "Conv"
        assert attr(conv, "group", 1) > 1 or attr(conv, "strides", [1, 1]) == [2, 2], pad.name
    fixes = [n for n in fast.graph.node if n.op_type == "ScatterElements"]
    assert len(fixes) == 4 * 10  # top, bottom, left, right of the 10 dense stride-1 convolutions
    modes = {attr(n, "coordinate_transformation_mode", b"") for n in fast.graph.node if n.op_type == "Resize"}
    assert modes == {b"align_corners"}


def test_fp16_copy_keeps_float32_io() -> None:
    model = convert.to_fp16(animegan.build(seed=0))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def _build_dev(tmp_path, seed: int) -> dict:
    rc = cli.main(
        [
            "--cache",
            str(tmp_path),
            "build-dev",
            "--seed",
            str(seed),
            "--only",
            "animeganv2-dev",
            "animeganv2-dev-nhwc",
        ]
    )
    assert rc == 0
    return {n: models.read_info(n, tmp_path) for n in ("animeganv2-dev", "animeganv2-dev-nhwc")}


def test_build_dev_is_deterministic(tmp_path) -> None:
    a = _build_dev(tmp_path / "a", 0)
    b = _build_dev(tmp_path / "b", 0)
    c = _build_dev(tmp_path / "c", 1)
    for name in a:
        assert a[name]["onnx_sha256"] == b[name]["onnx_sha256"]
        assert a[name]["onnx_sha256"] != c[name]["onnx_sha256"]
        assert a[name]["trained"] is False
        path = models.installed_path(name, "fp32", tmp_path / "a")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == a[name]["onnx_sha256"]["fp32"]
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert meta["trained"] == "false"


def test_verify_detects_a_changed_file(tmp_path, capsys) -> None:
    _build_dev(tmp_path, 0)
    assert cli.main(["--cache", str(tmp_path), "verify", "animeganv2-dev"]) == 0
    assert "untrained" in capsys.readouterr().out
    path = models.installed_path("animeganv2-dev", "fp32", tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    assert cli.main(["--cache", str(tmp_path), "verify", "animeganv2-dev"]) == 1
    assert "SHA-256 differs" in capsys.readouterr().out


def test_info_and_list_show_untrained(tmp_path, capsys) -> None:
    _build_dev(tmp_path, 0)
    assert cli.main(["--cache", str(tmp_path), "info", "animeganv2-dev"]) == 0
    assert "untrained weights" in capsys.readouterr().out
    assert cli.main(["--cache", str(tmp_path), "list"]) == 0
    assert "UNTRAINED" in capsys.readouterr().out
