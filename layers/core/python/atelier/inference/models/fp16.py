"""Convert an fp32 ONNX model to fp16 weights and compute, keeping fp32 inputs and outputs.

A graph pass of our own (no extra dependency): float32 initializers and constants become float16, every
float tensor between the graph's input and output is float16, and a Cast at each end keeps the model's
interface in float32 (``keep_io_types``), so callers feed and read the same arrays as for the fp32 model.
Inputs that ONNX requires in float32 whatever the data type (Resize's ``roi`` and ``scales``) stay float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_MAX = float(np.finfo(np.float16).max)

# (op_type, input index) pairs that must stay float32 in an fp16 graph.
_FLOAT32_INPUTS = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})
_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})


def _to_fp16(array: np.ndarray, name: str) -> np.ndarray:
    """Cast to float16, refusing values that would overflow to infinity."""
    finite = array[np.isfinite(array)]
    if finite.size and float(np.abs(finite).max()) > FP16_MAX:
        raise ValueError(f"{name}: values up to {np.abs(finite).max():.3g} overflow float16")
    return array.astype(np.float16)


def convert(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an fp16 copy of an fp32 model whose graph inputs and outputs stay float32."""
    src = onnx.ModelProto()
    src.CopyFrom(model)
    graph = src.graph
    for node in graph.node:
        if node.op_type in _SUBGRAPH_OPS:
            raise ValueError(f"{node.name or node.op_type}: graphs with subgraphs are not supported")

    keep32 = {
        node.input[i]
        for node in graph.node
        for (op, i) in _FLOAT32_INPUTS
        if node.op_type == op and len(node.input) > i and node.input[i]
    }

    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            init.CopyFrom(
                numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init), init.name), init.name)
            )

    for node in graph.node:
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                if node.op_type == "Constant" and node.output[0] in keep32:
                    continue
                a.t.CopyFrom(
                    numpy_helper.from_array(_to_fp16(numpy_helper.to_array(a.t), node.name), a.t.name)
                )

    # Interface: fp32 in, Cast to fp16 at once; fp16 out of the last node, Cast back to fp32.
    casts_in: list[onnx.NodeProto] = []
    renamed: dict[str, str] = {}
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            inner = f"{value.name}.fp16"
            renamed[value.name] = inner
            casts_in.append(
                helper.make_node(
                    "Cast", [value.name], [inner], name=f"{value.name}.to_fp16", to=TensorProto.FLOAT16
                )
            )
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]

    casts_out: list[onnx.NodeProto] = []
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{value.name}.fp16"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == value.name:
                    node.output[i] = inner
        if value.name in renamed:  # an input passed straight through
            inner = renamed[value.name]
        casts_out.append(
            helper.make_node(
                "Cast", [inner], [value.name], name=f"{value.name}.to_fp32", to=TensorProto.FLOAT
            )
        )

    nodes = [*casts_in, *graph.node, *casts_out]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # intermediate types changed; shape inference recomputes them
    helper.set_model_props(src, {**{p.key: p.value for p in src.metadata_props}, "precision": "fp16"})
    return src


def float_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every initializer, by name (for checking a conversion)."""
    return {init.name: init.data_type for init in model.graph.initializer}
