"""FP16 conversion: a valid graph, float32 interface, fp16 weights, and close to the fp32 result."""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

import atelier  # noqa: F401  (sets OpenCV's decode limits before cv2 loads)
from atelier.inference.models import edsr, fp16


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio for [0, 255] signals."""
    return float(10 * np.log10(255.0**2 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def image_nchw(h: int, w: int) -> np.ndarray:
    """A smooth colour test image as a float32 NCHW batch of one."""
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2).astype(np.float32)
    img = (img - img.min()) * (255.0 / max(float(img.max() - img.min()), 1.0))
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])


def cpu_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """ONNX Runtime on the CPU, 2 threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def baseline_x2() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """EDSR-baseline x2 in fp32 and its fp16 conversion."""
    model = edsr.build(2)
    return model, fp16.convert(model)


def test_fp16_graph_is_valid_with_float32_interface(
    baseline_x2: tuple[onnx.ModelProto, onnx.ModelProto],
) -> None:
    fp32_model, half = baseline_x2
    onnx.checker.check_model(half, full_check=True)  # full_check runs strict shape and type inference
    assert [v.type.tensor_type.elem_type for v in half.graph.input] == [TensorProto.FLOAT]
    assert [v.type.tensor_type.elem_type for v in half.graph.output] == [TensorProto.FLOAT]
    assert set(fp16.float_types(half).values()) == {TensorProto.FLOAT16}
    assert set(fp16.float_types(half)) == set(fp16.float_types(fp32_model))
    assert half.ByteSize() < 0.55 * fp32_model.ByteSize()
    assert half.graph.node[0].op_type == "Cast" and half.graph.node[-1].op_type == "Cast"
    inferred = onnx.shape_inference.infer_shapes(half, strict_mode=True)
    conv_outputs = {n.output[0] for n in inferred.graph.node if n.op_type == "Conv"}
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    assert {types[name] for name in conv_outputs} == {TensorProto.FLOAT16}, "convs must compute in fp16"
    assert {p.key: p.value for p in half.metadata_props}["precision"] == "fp16"


def test_fp16_runs_on_ort_cpu_close_to_fp32(baseline_x2: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    fp32_model, half = baseline_x2
    x = image_nchw(48, 40)
    full = cpu_session(fp32_model).run(None, {"input": x})[0]
    reduced = cpu_session(half).run(None, {"input": x})[0]
    assert reduced.dtype == np.float32 and reduced.shape == full.shape
    assert psnr(reduced, full) >= 45.0


def test_fp16_arithmetic_in_the_reference_runtime_stays_above_45_db() -> None:
    # ONNX Runtime's CPU provider computes fp16 convs in fp32; onnx.reference does the arithmetic in fp16.
    model = edsr.build(3, n_resblocks=4, n_feats=32)
    half = fp16.convert(model)
    x = image_nchw(10, 12)
    full = cpu_session(model).run(None, {"input": x})[0]
    outputs = cast(list[np.ndarray], ReferenceEvaluator(half).run(None, {"input": x}))
    reduced = np.asarray(outputs[0])
    assert reduced.dtype == np.float32
    assert not np.array_equal(reduced, full), "fp16 arithmetic should leave some rounding"
    assert psnr(reduced, full) >= 45.0


def test_values_beyond_fp16_range_are_refused() -> None:
    model = edsr.build(2, n_resblocks=1, n_feats=4)
    init = next(i for i in model.graph.initializer if i.name == "tail.1.bias")
    init.CopyFrom(onnx.numpy_helper.from_array(np.array([1e6, 0, 0], np.float32), init.name))
    with pytest.raises(ValueError, match="overflow float16"):
        fp16.convert(model)


def test_resize_scales_stay_float32() -> None:
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.full((3, 3, 3, 3), 1 / 27, np.float32), "w")
    scales = onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        h.make_node("Resize", ["x", "", "scales"], ["up"], mode="linear"),
        h.make_node("Conv", ["up", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])],
        [w, scales],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    half = fp16.convert(model)
    onnx.checker.check_model(half, full_check=True)
    assert fp16.float_types(half) == {"w": TensorProto.FLOAT16, "scales": TensorProto.FLOAT}
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 8, 8)).astype(np.float32)
    assert psnr(cpu_session(half).run(None, {"x": x})[0], cpu_session(model).run(None, {"x": x})[0]) >= 45.0
