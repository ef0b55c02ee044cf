"""Convert an fp32 ONNX model to fp16 weights and compute, keeping fp32 inputs and outputs.

The conversion is ONNX Runtime's own (``onnxruntime.transformers.float16``, shipped in the onnxruntime and
onnxruntime-gpu wheels and needing only numpy, onnx and packaging): with ``keep_io_types`` a Cast at each
end keeps the model's interface in float32, and inputs that ONNX requires in float32 (Resize's ``scales``)
stay float32. This module adds what that pass does not do:

- it refuses weights beyond the float16 range, which the library would silently clamp to +-65504;
- it puts the nodes back in topological order (the library appends its Casts at the end of the node list,
  which ONNX Runtime accepts but the ONNX checker and reference evaluator do not);
- it records ``precision: fp16`` in the model's metadata.

The library is imported when a conversion runs: the Lambda ONNX layer strips ``onnxruntime.transformers``
and only ever runs fp32 models.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP16_MAX = float(np.finfo(np.float16).max)


def convert(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an fp16 copy of an fp32 model whose graph inputs and outputs stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    refuse_overflow(model.graph)
    src = onnx.ModelProto()
    src.CopyFrom(model)
    half: onnx.ModelProto = convert_float_to_float16(src, keep_io_types=True, max_finite_val=FP16_MAX)
    sort_nodes(half.graph)
    helper.set_model_props(half, {**{p.key: p.value for p in half.metadata_props}, "precision": "fp16"})
    return half


def refuse_overflow(graph: onnx.GraphProto) -> None:
    """Raise ValueError if a float32 initializer or constant holds a finite value beyond float16's range."""
    tensors = [*graph.initializer]
    tensors += [a.t for node in graph.node for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    for tensor in tensors:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        finite = np.abs(values[np.isfinite(values)])
        if finite.size and float(finite.max()) > FP16_MAX:
            raise ValueError(f"{tensor.name}: values up to {finite.max():.3g} overflow float16")


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Order ``graph``'s nodes so that each comes after the nodes producing its inputs."""
    ready = {""} | {i.name for i in graph.initializer} | {i.name for i in graph.input}
    pending, ordered = list(graph.node), []
    while pending:
        blocked = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                blocked.append(node)
        if len(blocked) == len(pending):
            raise ValueError(f"the graph has a cycle or an undefined input at {blocked[0].name}")
        pending = blocked
    del graph.node[:]
    graph.node.extend(ordered)


def float_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every initializer, by name (for checking a conversion)."""
    return {init.name: init.data_type for init in model.graph.initializer}
