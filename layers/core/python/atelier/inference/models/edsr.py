"""EDSR super-resolution as an ONNX graph, built with onnx.helper and numpy (no torch).

The graph follows EDSR-PyTorch (``src/model/edsr.py`` and ``common.py``) layer for layer, and its
initializers carry the names of that project's state dict, so published weights load by name:

    sub_mean -> head.0 -> body.0..body.{n-1} (ResBlocks: conv, ReLU, conv, x res_scale, + skip)
    -> body.{n} (conv) -> + head output -> tail.0 (Upsampler: conv + PixelShuffle, twice for x4)
    -> tail.1 (conv) -> add_mean

Input: ``input``, NCHW float32 RGB in [0, 255]. Output: ``output``, NCHW float32 RGB, about [0, 255]
(not clipped, as in the original; callers clamp and round). PixelShuffle is DepthToSpace in CRD mode.

Without ``weights`` the model gets seeded random weights that are NOT trained: they are shaped so that
the image channels ride through the network and the upsampler interpolates them bilinearly, while the
other feature channels add a faint random texture. The output therefore looks like a bilinear upscale
plus noise; it exercises every code path at the real cost, but it is not super-resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypedDict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0
SCALES = (2, 3, 4)
OPSET = 17
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "output"


class Config(TypedDict):
    """Depth, width and residual scaling of an EDSR variant."""

    n_resblocks: int
    n_feats: int
    res_scale: float


BASELINE = Config(n_resblocks=16, n_feats=64, res_scale=1.0)
FULL = Config(n_resblocks=32, n_feats=256, res_scale=0.1)


def _upsampler_steps(scale: int) -> list[int]:
    """Pixel-shuffle factors of EDSR's Upsampler: x2 -> [2], x3 -> [3], x4 -> [2, 2]."""
    if scale not in SCALES:
        raise ValueError(f"EDSR scale must be one of {SCALES}, got {scale}")
    return [3] if scale == 3 else [2] * int(math.log2(scale))


def parameter_shapes(scale: int, n_resblocks: int = 16, n_feats: int = 64) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model, by its EDSR-PyTorch state-dict name, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {
        "sub_mean.weight": (3, 3, 1, 1),
        "sub_mean.bias": (3,),
        "add_mean.weight": (3, 3, 1, 1),
        "add_mean.bias": (3,),
        "head.0.weight": (n_feats, 3, 3, 3),
        "head.0.bias": (n_feats,),
    }
    for i in range(n_resblocks):
        for j in (0, 2):
            shapes[f"body.{i}.body.{j}.weight"] = (n_feats, n_feats, 3, 3)
            shapes[f"body.{i}.body.{j}.bias"] = (n_feats,)
    shapes[f"body.{n_resblocks}.weight"] = (n_feats, n_feats, 3, 3)
    shapes[f"body.{n_resblocks}.bias"] = (n_feats,)
    for k, r in enumerate(_upsampler_steps(scale)):
        shapes[f"tail.0.{2 * k}.weight"] = (r * r * n_feats, n_feats, 3, 3)
        shapes[f"tail.0.{2 * k}.bias"] = (r * r * n_feats,)
    shapes["tail.1.weight"] = (3, n_feats, 3, 3)
    shapes["tail.1.bias"] = (3,)
    return shapes


def _mean_shift(sign: float) -> tuple[np.ndarray, np.ndarray]:
    """MeanShift(rgb_range=255, std=1): identity 1x1 conv with bias sign * 255 * mean."""
    weight = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    bias = (sign * RGB_RANGE * np.asarray(RGB_MEAN)).astype(np.float32)
    return weight, bias


def _bilinear_subpixel_kernels(r: int) -> np.ndarray:
    """3x3 kernels (r*r, 3, 3) that give each of the r*r sub-pixels its bilinear value from a 3x3 patch."""
    taps = np.zeros((r, 3), dtype=np.float32)
    for i in range(r):
        d = (i + 0.5) / r - 0.5  # sub-pixel centre relative to the source pixel centre, in (-0.5, 0.5)
        if d >= 0:
            taps[i, 1], taps[i, 2] = 1.0 - d, d
        else:
            taps[i, 1], taps[i, 0] = 1.0 + d, -d
    return np.einsum("ia,jb->ijab", taps, taps).reshape(r * r, 3, 3)


def random_weights(
    scale: int, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded, untrained weights: image channels pass through and are upsampled bilinearly, plus texture."""
    if n_feats < 4:
        raise ValueError("n_feats must be at least 4 (three image channels and one texture channel)")
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}

    def he(shape: tuple[int, ...], gain: float) -> np.ndarray:
        fan_in = shape[1] * shape[2] * shape[3]
        return (rng.standard_normal(shape) * (gain / math.sqrt(fan_in))).astype(np.float32)

    w["sub_mean.weight"], w["sub_mean.bias"] = _mean_shift(-1.0)
    w["add_mean.weight"], w["add_mean.bias"] = _mean_shift(+1.0)

    head = he((n_feats, 3, 3, 3), 1.0)
    head[:3] = 0.0
    head[np.arange(3), np.arange(3), 1, 1] = 1.0  # channels 0-2 carry the mean-free image
    w["head.0.weight"], w["head.0.bias"] = head, np.zeros(n_feats, np.float32)

    # Residual branches: He gain on the first conv (ReLU follows); the second is damped by the block count
    # and divided by res_scale so baseline and full models add the same amount per block. Rows 0-2 write
    # into the image channels and are damped further, so the picture survives the body.
    branch_gain = 0.5 / math.sqrt(n_resblocks) / res_scale
    for i in range(n_resblocks):
        first = he((n_feats, n_feats, 3, 3), math.sqrt(2.0))
        second = he((n_feats, n_feats, 3, 3), branch_gain)
        second[:3] *= 0.02
        w[f"body.{i}.body.0.weight"], w[f"body.{i}.body.0.bias"] = first, np.zeros(n_feats, np.float32)
        w[f"body.{i}.body.2.weight"], w[f"body.{i}.body.2.bias"] = second, np.zeros(n_feats, np.float32)
    last = he((n_feats, n_feats, 3, 3), 0.3)
    last[:3] *= 0.02
    w[f"body.{n_resblocks}.weight"], w[f"body.{n_resblocks}.bias"] = last, np.zeros(n_feats, np.float32)

    for k, r in enumerate(_upsampler_steps(scale)):
        up = he((r * r * n_feats, n_feats, 3, 3), 1.0)
        kernels = _bilinear_subpixel_kernels(r)
        for c in range(3):
            # DepthToSpace CRD, like PixelShuffle: sub-pixel s of output channel c is input channel c*r*r+s
            up[c * r * r : (c + 1) * r * r] = 0.0
            up[c * r * r : (c + 1) * r * r, c] = kernels
        w[f"tail.0.{2 * k}.weight"], w[f"tail.0.{2 * k}.bias"] = up, np.zeros(r * r * n_feats, np.float32)

    tail = he((3, n_feats, 3, 3), 0.05)
    tail[:, :3] = 0.0
    tail[np.arange(3), np.arange(3), 1, 1] = 1.0
    w["tail.1.weight"], w["tail.1.bias"] = tail, np.zeros(3, np.float32)
    return w


def _conv(name: str, x: str, out: str) -> onnx.NodeProto:
    """A 3x3 (or 1x1, by its weight) same-padded Conv named after the PyTorch module."""
    return helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [out], name=name)


def _same_pads(k: int) -> list[int]:
    """Pads for a stride-1 'same' conv of odd kernel size k."""
    return [k // 2] * 4


def build(
    scale: int,
    n_resblocks: int = 16,
    n_feats: int = 64,
    res_scale: float = 1.0,
    weights: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> onnx.ModelProto:
    """Build EDSR (baseline by default) as an ONNX model; seeded untrained weights when none are given."""
    shapes = parameter_shapes(scale, n_resblocks, n_feats)
    if weights is None:
        params = random_weights(scale, n_resblocks, n_feats, res_scale, seed)
        origin = f"seeded random, untrained (seed {seed})"
    else:
        params = dict(weights)
        for name, sign in (("sub_mean", -1.0), ("add_mean", 1.0)):
            if f"{name}.weight" not in params:
                params[f"{name}.weight"], params[f"{name}.bias"] = _mean_shift(sign)
        origin = "supplied"
    missing = sorted(set(shapes) - set(params))
    if missing:
        raise ValueError(f"weights lack {len(missing)} parameters, e.g. {missing[:3]}")
    for name, shape in shapes.items():
        if tuple(np.shape(params[name])) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(np.shape(params[name]))}")

    nodes: list[onnx.NodeProto] = []
    pads = {name: _same_pads(shape[2]) for name, shape in shapes.items() if len(shape) == 4}

    def conv(name: str, x: str, out: str) -> str:
        node = _conv(name, x, out)
        node.attribute.append(helper.make_attribute("pads", pads[f"{name}.weight"]))
        nodes.append(node)
        return out

    x = conv("sub_mean", INPUT_NAME, "sub_mean.out")
    head = conv("head.0", x, "head.out")
    h = head
    res_scale_name = "res_scale"
    for i in range(n_resblocks):
        p = f"body.{i}"
        t = conv(f"{p}.body.0", h, f"{p}.conv0.out")
        nodes.append(helper.make_node("Relu", [t], [f"{p}.relu.out"], name=f"{p}.body.1"))
        t = conv(f"{p}.body.2", f"{p}.relu.out", f"{p}.conv2.out")
        if res_scale != 1.0:
            nodes.append(helper.make_node("Mul", [t, res_scale_name], [f"{p}.scaled"], name=f"{p}.mul"))
            t = f"{p}.scaled"
        nodes.append(helper.make_node("Add", [t, h], [f"{p}.out"], name=f"{p}.add"))
        h = f"{p}.out"
    t = conv(f"body.{n_resblocks}", h, "body.out")
    nodes.append(helper.make_node("Add", [t, head], ["res"], name="body.add"))
    t = "res"
    for k, r in enumerate(_upsampler_steps(scale)):
        t = conv(f"tail.0.{2 * k}", t, f"tail.0.{2 * k}.out")
        nodes.append(
            helper.make_node(
                "DepthToSpace",
                [t],
                [f"tail.0.{2 * k + 1}.out"],
                name=f"tail.0.{2 * k + 1}",
                blocksize=r,
                mode="CRD",
            )
        )
        t = f"tail.0.{2 * k + 1}.out"
    t = conv("tail.1", t, "tail.1.out")
    conv("add_mean", t, OUTPUT_NAME)

    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(params[name], dtype=np.float32), name) for name in shapes
    ]
    if res_scale != 1.0:
        initializers.append(numpy_helper.from_array(np.array(res_scale, dtype=np.float32), res_scale_name))
    graph = helper.make_graph(
        nodes,
        f"edsr_r{n_resblocks}f{n_feats}x{scale}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 3, "H_out", "W_out"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="atelier")
    model.ir_version = IR_VERSION
    meta = {
        "architecture": "EDSR",
        "scale": str(scale),
        "n_resblocks": str(n_resblocks),
        "n_feats": str(n_feats),
        "res_scale": str(res_scale),
        "receptive_field": str(receptive_field(n_resblocks, scale)),
        "weights": origin,
    }
    helper.set_model_props(model, meta)
    return model


def _stack(n_resblocks: int, scale: int) -> list[tuple[str, int]]:
    """The longest chain of spatial ops through EDSR, as (op, size): ('conv', kernel) or ('shuffle', r)."""
    ops: list[tuple[str, int]] = [("conv", 1), ("conv", 3)]  # sub_mean, head
    ops += [("conv", 3)] * (2 * n_resblocks + 1)  # two per ResBlock, then body.{n}
    for r in _upsampler_steps(scale):
        ops += [("conv", 3), ("shuffle", r)]
    ops += [("conv", 3), ("conv", 1)]  # tail.1, add_mean
    return ops


def _chain_radius(ops: Sequence[tuple[str, int]]) -> int:
    """Exact one-sided reach, in input pixels, of a chain of same-padded convs and pixel shuffles."""
    total = math.prod(size for op, size in ops if op == "shuffle")
    worst = 0
    for phase in range(total):
        p = 1000 * total + phase  # an output index far from any border, at every sub-pixel phase
        lo, hi = p, p
        for op, size in reversed(ops):
            if op == "conv":
                lo, hi = lo - size // 2, hi + size // 2
            else:
                lo, hi = lo // size, hi // size
        centre = p // total
        worst = max(worst, centre - lo, hi - centre)
    return worst


def receptive_field(n_resblocks: int, scale: int) -> int:
    """Halo EDSR needs, in input pixels: how far beyond a pixel its upscaled block can see (2n + 4)."""
    return _chain_radius(_stack(n_resblocks, scale))


# ---------------------------------------------------------------------------------------------------------
# Receptive field of any ONNX graph of convolutions, by walking its nodes.

_ELEMENTWISE = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "Clip",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Cast",
        "Identity",
        "Neg",
        "Abs",
        "Sqrt",
        "Pow",
        "Max",
        "Min",
        "Erf",
        "HardSigmoid",
        "Elu",
        "Selu",
    }
)
_NO_SPATIAL_INPUT = frozenset({"Constant", "Shape", "ConstantOfShape"})


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """An attribute's value, or the default when the node does not set it."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


@dataclass(frozen=True)
class _Rule:
    """How a node maps output indices to the input indices it reads, along one axis."""

    kind: str  # "window" (conv, pool), "divide" (depth-to-space), "resize", "same" (pointwise)
    stride: int = 1
    span: int = 0  # dilation * (kernel - 1)
    pad: int = 0  # padding before the first element
    factor: Fraction = Fraction(1)  # resolution out / in
    reach: int = 0  # extra input pixels an interpolating resize reads on each side

    def back(self, lo: int, hi: int) -> tuple[int, int]:
        """The input index interval an output index interval reads."""
        if self.kind == "window":
            return lo * self.stride - self.pad, hi * self.stride - self.pad + self.span
        if self.kind == "divide":
            b = self.factor.numerator
            return lo // b, hi // b
        if self.kind == "resize":
            return math.floor(lo / self.factor) - self.reach, math.floor(hi / self.factor) + self.reach
        return lo, hi

    @property
    def period(self) -> int:
        """After how many output pixels this node's alignment repeats."""
        return self.stride * self.factor.numerator * self.factor.denominator


def _rule(node: onnx.NodeProto, axis: int, consts: dict[str, np.ndarray]) -> _Rule:
    """The interval rule of one node along one spatial axis (0: height, 1: width)."""
    op, label = node.op_type, node.name or node.op_type
    if op in ("Conv", "MaxPool", "AveragePool"):
        kernel = _attr(node, "kernel_shape", None)
        if kernel is None and op == "Conv" and node.input[1] in consts:
            kernel = list(consts[node.input[1]].shape[2:])
        if kernel is None:
            raise ValueError(f"{label}: kernel shape unknown")
        if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise ValueError(f"{label}: auto_pad is not supported; use explicit pads")
        stride = int(_attr(node, "strides", [1, 1])[axis])
        dilation = int(_attr(node, "dilations", [1, 1])[axis])
        pad = int(_attr(node, "pads", [0, 0, 0, 0])[axis])
        factor = Fraction(1, stride)
        return _Rule("window", stride=stride, span=dilation * (int(kernel[axis]) - 1), pad=pad, factor=factor)
    if op == "DepthToSpace":
        return _Rule("divide", factor=Fraction(int(_attr(node, "blocksize", 1))))
    if op in ("Resize", "Upsample"):
        scales_name = node.input[2] if op == "Resize" and len(node.input) > 2 else node.input[-1]
        if scales_name not in consts:
            raise ValueError(f"{label}: only constant scales are supported")
        factor = Fraction(float(consts[scales_name][2 + axis])).limit_denominator(64)
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        return _Rule("resize", factor=factor, reach={"nearest": 0, "linear": 1, "cubic": 2}[mode])
    if op in _ELEMENTWISE:
        return _Rule("same")
    raise ValueError(f"{label}: op {op} has no receptive-field rule")


def _spatial_nodes(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, tuple[_Rule, _Rule], list[str]]]:
    """Nodes that read the image (directly or not), with their rules per axis and their spatial inputs."""
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attr(node, "value", None))
    spatial = {graph.input[0].name}
    nodes = []
    for node in graph.node:  # ONNX keeps nodes in topological order
        ins = [i for i in node.input if i in spatial]
        if not ins or node.op_type in _NO_SPATIAL_INPUT:
            continue
        nodes.append((node, (_rule(node, 0, consts), _rule(node, 1, consts)), ins))
        spatial.update(node.output)
    return nodes


def _forward(model: onnx.ModelProto, axis: int) -> tuple[Fraction, int]:
    """Resolution of the output relative to the input, and the period of output alignments."""
    nodes = _spatial_nodes(model)
    scale: dict[str, Fraction] = {model.graph.input[0].name: Fraction(1)}
    period: dict[str, int] = {model.graph.input[0].name: 1}
    for node, rules, ins in nodes:
        rule = rules[axis]
        s = scale[ins[0]] * rule.factor
        p = math.lcm(*(period[i] for i in ins)) * rule.period
        for o in node.output:
            scale[o], period[o] = s, p
    out = model.graph.output[0].name
    if period[out] > 1 << 16:
        raise ValueError("too many strided or resampling layers for the receptive-field walk")
    return scale[out], period[out]


def graph_receptive_field(model: onnx.ModelProto) -> int:
    """Derive the halo (input pixels) of a graph from its Conv, DepthToSpace, Resize and pointwise nodes."""
    nodes = _spatial_nodes(model)
    source, sink = model.graph.input[0].name, model.graph.output[0].name
    worst = 0
    for axis in (0, 1):
        scale, period = _forward(model, axis)
        for phase in range(period):  # every alignment of an output pixel to the strides and shuffles
            p = 1000 * period + phase
            need: dict[str, tuple[int, int]] = {sink: (p, p)}
            for node, rules, ins in reversed(nodes):
                reads = [need[o] for o in node.output if o in need]
                if not reads:
                    continue
                lo, hi = rules[axis].back(min(a for a, _ in reads), max(b for _, b in reads))
                for i in ins:
                    a, b = need.get(i, (lo, hi))
                    need[i] = (min(a, lo), max(b, hi))
            lo, hi = need[source]
            centre = math.floor(p / scale)
            worst = max(worst, centre - lo, hi - centre)
    return worst


def graph_scale(model: onnx.ModelProto) -> int:
    """The integer upscaling factor of a conv graph, from its nodes."""
    scales = {_forward(model, axis)[0] for axis in (0, 1)}
    if len(scales) != 1 or next(iter(scales)).denominator != 1:
        raise ValueError(f"graph scales by {sorted(scales)}, not one integer factor")
    return int(next(iter(scales)))


def activation_bytes_per_pixel(n_feats: int, scale: int, dtype_bytes: int = 4) -> int:
    """Rough peak activation memory per input pixel of one tile window (for choosing tile and batch)."""
    # Live at once in the body: the block input, its branch (two convs) and the head output for the long
    # skip: four n_feats maps. The upsampler's conv output is r*r*n_feats at its input resolution, and
    # its shuffled copy as large again; the last conv reads n_feats maps at scale^2 pixels.
    lr = 4 * n_feats
    up = max(2 * r * r * n_feats * (s // r) ** 2 for s, r in _upsampler_accum(scale))
    hr = n_feats * scale * scale + 2 * 3 * scale * scale
    return dtype_bytes * (lr + up + hr)


def _upsampler_accum(scale: int) -> list[tuple[int, int]]:
    """(resolution after the step, shuffle factor) for each Upsampler step."""
    out, res = [], 1
    for r in _upsampler_steps(scale):
        res *= r
        out.append((res, r))
    return out


def conv_macs_per_input_pixel(model: onnx.ModelProto) -> float:
    """Multiply-accumulates of the graph's convolutions per input pixel (for FLOP-rate reporting)."""
    graph = model.graph
    consts = {init.name: init for init in graph.initializer}
    res = {graph.input[0].name: Fraction(1)}  # pixels of each tensor per input pixel
    macs = 0.0
    for node in graph.node:
        src = next((res[i] for i in node.input if i in res), None)
        if src is None:
            continue
        area = src
        if node.op_type == "Conv":
            dims = list(consts[node.input[1]].dims)
            macs += float(area) * dims[0] * dims[1] * dims[2] * dims[3]
        elif node.op_type == "DepthToSpace":
            b = int(_attr(node, "blocksize", 1))
            area = src * b * b
        for o in node.output:
            res[o] = area
    return macs
