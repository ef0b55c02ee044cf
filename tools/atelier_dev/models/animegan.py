"""AnimeGANv2 generator (the PyTorch port's architecture) written as an ONNX graph with numpy and onnx.helper.

Initializer names are the PyTorch state-dict keys (``block_a.0.1.weight`` …), so real weights read from a
``.pt`` file fill the graph by name. Two formulations of the same function are offered:

- ``reference``: what ``torch.onnx.export`` writes for the port (``Pad`` reflect, ``Conv``, GroupNorm as
  ``Reshape`` + ``InstanceNormalization`` + ``Reshape`` + ``Mul`` + ``Add``, ``LeakyRelu``);
- ``fast``: GroupNorm(1 group) as two ``ReduceMean`` statistics feeding a ``BatchNormalization`` whose
  per-channel mean and variance are the broadcast image statistics: one pass for the affine instead of
  four, no reshapes between convolutions. Batch size 1 only (the statistics are per image).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
GN_EPS = 1e-5
LRELU_SLOPE = 0.2
FORMULATIONS = ("reference", "fast")
LAYOUTS = ("NCHW", "NHWC")
_AXES = np.array([1, 2, 3], dtype=np.int64)
UP_SPLIT = 2  # channel groups of the convolutions that absorb an upsampling (see _upsampled_conv)


@dataclass(frozen=True)
class ConvSpec:
    """One ConvNormLReLU or bare convolution of the generator, as the state dict names it."""

    prefix: str
    in_ch: int
    out_ch: int
    kernel: int = 3
    stride: int = 1
    pads: tuple[int, int, int, int] = (1, 1, 1, 1)  # top, left, bottom, right (reflection)
    groups: int = 1
    bias: bool = False


@dataclass
class _Graph:
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, list[int | str]] = field(default_factory=dict)  # value_info to record
    counter: int = 0

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}__{self.counter}"

    def const(self, stem: str, value: np.ndarray) -> str:
        key = self.name(stem)
        self.inits[key] = value
        return key

    def op(self, op_type: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        out = self.name(stem)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _cnl(prefix: str, in_ch: int, out_ch: int, **kw: object) -> ConvSpec:
    return ConvSpec(prefix, in_ch, out_ch, **kw)  # type: ignore[arg-type]


def _irb(prefix: str, in_ch: int, out_ch: int) -> list[tuple[str, ConvSpec]]:
    mid = in_ch * 2
    return [
        ("cnl", _cnl(f"{prefix}.layers.0", in_ch, mid, kernel=1, pads=(0, 0, 0, 0))),
        ("cnl", _cnl(f"{prefix}.layers.1", mid, mid, groups=mid, bias=True)),
        ("conv_gn", _cnl(f"{prefix}.layers.2", mid, out_ch, kernel=1, pads=(0, 0, 0, 0))),
    ]


def layer_plan() -> list[tuple[str, object]]:
    """The generator as an ordered list of steps: ('cnl', spec), ('irb', (prefix, in, out)), marks."""
    half = (0, 0, 1, 1)
    plan: list[tuple[str, object]] = [
        ("cnl", _cnl("block_a.0", 3, 32, kernel=7, pads=(3, 3, 3, 3))),
        ("cnl", _cnl("block_a.1", 32, 64, stride=2, pads=half)),
        ("cnl", _cnl("block_a.2", 64, 64)),
        ("mark_half", None),
        ("cnl", _cnl("block_b.0", 64, 128, stride=2, pads=half)),
        ("cnl", _cnl("block_b.1", 128, 128)),
        ("cnl", _cnl("block_c.0", 128, 128)),
        ("irb", ("block_c.1", 128, 256)),
        ("irb", ("block_c.2", 256, 256)),
        ("irb", ("block_c.3", 256, 256)),
        ("irb", ("block_c.4", 256, 256)),
        ("cnl", _cnl("block_c.5", 256, 128)),
        ("up_half", None),
        ("cnl", _cnl("block_d.0", 128, 128)),
        ("cnl", _cnl("block_d.1", 128, 128)),
        ("up_full", None),
        ("cnl", _cnl("block_e.0", 128, 64)),
        ("cnl", _cnl("block_e.1", 64, 64)),
        ("cnl", _cnl("block_e.2", 64, 32, kernel=7, pads=(3, 3, 3, 3))),
    ]
    return plan


def parameter_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the generator and its shape, in definition order."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(spec: ConvSpec, conv_key: str, norm_key: str | None) -> None:
        shapes[f"{conv_key}.weight"] = (spec.out_ch, spec.in_ch // spec.groups, spec.kernel, spec.kernel)
        if spec.bias:
            shapes[f"{conv_key}.bias"] = (spec.out_ch,)
        if norm_key is not None:
            shapes[f"{norm_key}.weight"] = (spec.out_ch,)
            shapes[f"{norm_key}.bias"] = (spec.out_ch,)

    for kind, arg in layer_plan():
        if kind == "cnl":
            assert isinstance(arg, ConvSpec)
            conv(arg, f"{arg.prefix}.1", f"{arg.prefix}.2")
        elif kind == "irb":
            prefix, in_ch, out_ch = cast(tuple[str, int, int], arg)
            for sub_kind, spec in _irb(prefix, in_ch, out_ch):
                if sub_kind == "cnl":
                    conv(spec, f"{spec.prefix}.1", f"{spec.prefix}.2")
                else:
                    conv(spec, spec.prefix, None)
                    shapes[f"{prefix}.layers.3.weight"] = (spec.out_ch,)
                    shapes[f"{prefix}.layers.3.bias"] = (spec.out_ch,)
    shapes["out_layer.0.weight"] = (3, 32, 1, 1)
    return shapes


def parameter_count() -> int:
    """Number of trainable parameters (2.14 M for the published generator)."""
    return int(sum(int(np.prod(s)) for s in parameter_shapes().values()))


def seeded_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed pseudo-random weights of the right shapes (untrained; for tests and the offline demo)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for key, shape in parameter_shapes().items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif key.endswith(".bias") and _is_norm_key(key):
            w = rng.standard_normal(shape) * 0.1
        elif key.endswith(".bias"):
            w = rng.standard_normal(shape) * 0.05
        else:  # GroupNorm gamma
            w = 1.0 + rng.standard_normal(shape) * 0.1
        weights[key] = w.astype(np.float32)
    return weights


def _is_norm_key(key: str) -> bool:
    parts = key.split(".")
    return parts[-2] in {"2", "3"} and not key.startswith("out_layer")


def check_weights(weights: Mapping[str, np.ndarray]) -> None:
    """Raise ValueError unless ``weights`` holds exactly the generator's keys with the right shapes."""
    expected = parameter_shapes()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ValueError(
            f"state dict does not fit the generator: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for key, shape in expected.items():
        if tuple(weights[key].shape) != shape:
            raise ValueError(f"{key}: shape {tuple(weights[key].shape)}, expected {shape}")


def build(
    weights: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    layout: str = "NCHW",
    formulation: str = "fast",
    trained: bool | None = None,
    size_multiple: int | None = None,
) -> onnx.ModelProto:
    """The generator as an ONNX model: input RGB in [-1, 1] (NCHW or NHWC), output RGB in [-1, 1]."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}")
    if weights is None:
        weights = seeded_weights(seed)
        trained = False if trained is None else trained
    check_weights(weights)
    g = _Graph()
    for key in parameter_shapes():
        g.inits[key] = np.ascontiguousarray(weights[key], dtype=np.float32)
    if layout == "NHWC":
        x = g.op("Transpose", ["input"], "to_nchw", perm=[0, 3, 1, 2])
        in_shape: list[int | str] = [1, "height", "width", 3]
    else:
        x = "input"
        in_shape = [1, 3, "height", "width"]
    full_ref = x
    half_ref = x
    up_ref: str | None = None  # fast: the pending upsampling, done by the next convolution's padding
    for kind, arg in layer_plan():
        if kind == "cnl":
            assert isinstance(arg, ConvSpec)
            x = _conv_norm_lrelu(g, x, arg, formulation, up_ref)
            up_ref = None
        elif kind == "irb":
            prefix, in_ch, out_ch = cast(tuple[str, int, int], arg)
            x = _inverted_res_block(g, x, prefix, in_ch, out_ch, formulation)
        elif kind == "mark_half":
            half_ref = x
        elif kind in ("up_half", "up_full"):
            ref = half_ref if kind == "up_half" else full_ref
            if formulation == "fast":
                up_ref = ref
            else:
                x = _resize_like(g, x, ref)
    x = g.op("Conv", [x, "out_layer.0.weight"], "out_conv", kernel_shape=[1, 1])
    out_name = "output"
    if layout == "NHWC":
        x = g.op("Tanh", [x], "tanh")
        g.nodes.append(helper.make_node("Transpose", [x], [out_name], name="to_nhwc", perm=[0, 2, 3, 1]))
        out_shape: list[int | str] = [1, "height", "width", 3]
    else:
        g.nodes.append(helper.make_node("Tanh", [x], [out_name], name="tanh_out"))
        out_shape = [1, 3, "height", "width"]
    graph = helper.make_graph(
        g.nodes,
        "animeganv2_generator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in g.inits.items()],
        value_info=[helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in g.shapes.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="atelier", producer_version="1"
    )
    model.ir_version = 8
    meta = {
        "architecture": "animeganv2",
        "layout": layout,
        "value_range": "[-1,1]",
        "formulation": formulation,
        "size_multiple": str(size_multiple or (4 if layout == "NCHW" else 32)),
    }
    if trained is not None:
        meta["trained"] = "true" if trained else "false"
    helper.set_model_props(model, meta)
    return model


def _conv(
    g: _Graph, x: str, spec: ConvSpec, weight_key: str, bias_key: str | None, formulation: str = "reference"
) -> str:
    inputs = [x, weight_key] + ([bias_key] if bias_key else [])
    if formulation == "fast" and _border_pad(spec):
        # Zero padding inside the convolution, then the border rows and columns recomputed from reflected
        # strips: no padded copy of the input, whose odd size would not fit the freed blocks of the arena.
        strips, cuts = _border_strips(g, x, spec, weight_key, bias_key)
        inputs[0] = _after(g, x, cuts, spec.prefix)
        y = g.op(
            "Conv",
            inputs,
            f"{spec.prefix}.conv",
            kernel_shape=[spec.kernel] * 2,
            group=spec.groups,
            pads=[spec.pads[0], spec.pads[1], spec.pads[2], spec.pads[3]],
        )
        # A named shape lets ONNX Runtime prove each fix's output the size of its input and write in place.
        g.shapes[y] = [1, spec.out_ch, f"{y}_h", f"{y}_w"]
        return _fix_border(g, y, strips, spec.pads[0], spec.prefix)
    if any(spec.pads):
        top, left, bottom, right = spec.pads
        pads = g.const("pads", np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64))
        inputs[0] = g.op("Pad", [x, pads], f"{spec.prefix}.pad", mode="reflect")
    return g.op(
        "Conv",
        inputs,
        f"{spec.prefix}.conv",
        kernel_shape=[spec.kernel, spec.kernel],
        strides=[spec.stride, spec.stride],
        group=spec.groups,
    )


def _border_pad(spec: ConvSpec) -> bool:
    """Whether ``spec`` is a dense stride-1 convolution with reflection pad p = (kernel - 1) / 2 all round.

    Depthwise convolutions keep their Pad: their border fixes would cost more (many channels, small images).
    """
    p = spec.pads[0]
    square = spec.pads == (p, p, p, p) and spec.kernel == 2 * p + 1
    return spec.stride == 1 and spec.groups == 1 and p > 0 and square


def _after(g: _Graph, x: str, deps: list[str], stem: str) -> str:
    """``x`` itself (a Reshape to its own shape, no copy), but only once every tensor in ``deps`` exists.

    ONNX has no control edges, and ONNX Runtime may order independent nodes differently from one process
    to the next; this data edge pins the order where it decides how many large tensors are alive at once.
    """
    shapes = g.op("Concat", [g.op("Shape", [d], f"{stem}.dep") for d in deps], f"{stem}.deps", axis=0)
    zero = g.op(
        "Mul",
        [g.op("ReduceMin", [shapes], f"{stem}.dep_min", keepdims=1), g.const("zero", np.zeros(1, np.int64))],
        f"{stem}.dep_zero",
    )
    shape = g.op("Add", [g.op("Shape", [x], f"{stem}.own"), zero], f"{stem}.same")
    return g.op("Reshape", [x, shape], f"{stem}.after")


def _border_strips(
    g: _Graph, x: str, spec: ConvSpec, weight_key: str, bias_key: str | None
) -> tuple[dict[str, str], list[str]]:
    """The outputs of a reflection-padded stride-1 convolution on its p border rows and columns.

    Each comes from a strip of 2p input rows (columns), reflection-padded by p on its three open sides and
    convolved without padding: top and bottom give [1, C, p, W], left and right [1, C, H, p], corners
    included, so that they agree with Conv(Pad(x, reflect)) exactly where zero padding does not. Also
    returns the four slices of ``x``: once they exist, the strips no longer need ``x``.
    """
    p = spec.pads[0]
    big = np.iinfo(np.int64).max
    cut = {"top": (0, 2 * p, 2), "bottom": (-2 * p, big, 2), "left": (0, 2 * p, 3), "right": (-2 * p, big, 3)}
    # Pad's layout: begins of (N, C, H, W), then ends.
    pads = {
        "top": [0, 0, p, p, 0, 0, 0, p],
        "bottom": [0, 0, 0, p, 0, 0, p, p],
        "left": [0, 0, p, p, 0, 0, p, 0],
        "right": [0, 0, p, 0, 0, 0, p, p],
    }
    strips = {}
    cuts = []
    for side, (lo, hi, axis) in cut.items():
        strip = g.op(
            "Slice",
            [
                x,
                g.const("sl_start", np.array([lo], dtype=np.int64)),
                g.const("sl_end", np.array([hi], dtype=np.int64)),
                g.const("sl_axis", np.array([axis], dtype=np.int64)),
            ],
            f"{spec.prefix}.{side}",
        )
        cuts.append(strip)
        padded = g.op(
            "Pad",
            [strip, g.const("pads", np.array(pads[side], dtype=np.int64))],
            f"{spec.prefix}.{side}_pad",
            mode="reflect",
        )
        inputs = [padded, weight_key] + ([bias_key] if bias_key else [])
        strips[side] = g.op(
            "Conv", inputs, f"{spec.prefix}.{side}_conv", kernel_shape=[spec.kernel] * 2, group=spec.groups
        )
    return strips, cuts


def _fix_border(g: _Graph, y: str, strips: Mapping[str, str], p: int, stem: str) -> str:
    """``y`` with its p outer rows and columns overwritten by ``strips`` (ScatterElements, in place)."""
    steps = np.arange(p, dtype=np.int64)
    for side in ("top", "bottom", "left", "right"):
        axis = 2 if side in ("top", "bottom") else 3
        shape = [1, 1, p, 1] if axis == 2 else [1, 1, 1, p]
        index = g.const("border_idx", steps.reshape(shape))
        if side in ("bottom", "right"):
            extent = g.op("Shape", [y], f"{stem}.extent", start=axis, end=axis + 1)
            index = g.op(
                "Add",
                [index, g.op("Sub", [extent, g.const("p", np.array([p], np.int64))], f"{stem}.first")],
                f"{stem}.{side}_idx",
            )
        index = g.op(
            "Expand", [index, g.op("Shape", [strips[side]], f"{stem}.{side}_shape")], f"{stem}.{side}_at"
        )
        y = g.op("ScatterElements", [y, index, strips[side]], f"{stem}.{side}_fix", axis=axis)
    return y


def _upsampled_conv(g: _Graph, x: str, ref: str, spec: ConvSpec, weight_key: str) -> str:
    """Conv(ReflectPad1(Resize_align_corners(x, size of ref))) without the full-size intermediates.

    The input channels go in ``UP_SPLIT`` groups: each group is upsampled on its own and convolved with
    zero padding, and each group's convolution accumulates into the next one's output (Conv is linear in
    its input channels), so only part of the generator's widest tensor, the full-size input of
    ``block_e.0`` and its NCHWc copy, is alive at once. The border rows and columns, where reflection and
    zero padding differ, are recomputed from each group's reflected strips, summed, and written back.
    """
    if spec.pads != (1, 1, 1, 1) or spec.stride != 1 or spec.groups != 1 or spec.bias:
        raise ValueError(f"{spec.prefix}: only a plain 3x3 convolution can absorb the upsampling")
    ref_hw = g.op("Shape", [ref], "up.refhw", start=2, end=4)
    total = None
    strips: dict[str, str] = {}
    step = -(-spec.in_ch // UP_SPLIT)
    for lo in range(0, spec.in_ch, step):
        hi = min(spec.in_ch, lo + step)
        sl_start = g.const("sl_start", np.array([lo], dtype=np.int64))
        sl_end = g.const("sl_end", np.array([hi], dtype=np.int64))
        axis1 = g.const("sl_axis", np.array([1], dtype=np.int64))
        part = g.op("Slice", [x, sl_start, sl_end, axis1], f"{spec.prefix}.in{lo}")
        sizes = g.op(
            "Concat", [g.const("nc", np.array([1, hi - lo], dtype=np.int64)), ref_hw], "up.sizes", axis=0
        )
        up = g.op(
            "Resize",
            [part, "", "", sizes],
            f"{spec.prefix}.up{lo}",
            mode="linear",
            coordinate_transformation_mode="align_corners",
        )
        w = g.op("Slice", [weight_key, sl_start, sl_end, axis1], f"{spec.prefix}.w{lo}")
        part_spec = ConvSpec(f"{spec.prefix}.g{lo}", hi - lo, spec.out_ch)
        part_strips, cuts = _border_strips(g, up, part_spec, w, None)
        for side, value in part_strips.items():
            strips[side] = (
                value
                if side not in strips
                else g.op("Add", [value, strips[side]], f"{spec.prefix}.{side}_sum")
            )
        up = _after(g, up, cuts, part_spec.prefix)
        y = g.op("Conv", [up, w], f"{spec.prefix}.conv{lo}", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        # The partial outputs share one symbolic shape, so that ONNX Runtime's NCHWc pass can prove them
        # equal and accumulate each into the next convolution's output (no separate Sum pass or buffer).
        g.shapes[y] = [1, spec.out_ch, f"{ref}_h", f"{ref}_w"]
        total = y if total is None else g.op("Add", [y, total], f"{spec.prefix}.sum{lo}")
    assert total is not None
    return _fix_border(g, total, strips, 1, spec.prefix)


def _group_norm(g: _Graph, x: str, channels: int, gamma: str, beta: str, formulation: str, stem: str) -> str:
    if formulation == "reference":
        shape = g.op("Shape", [x], f"{stem}.shape")
        flat_shape = g.const("flat", np.array([0, 1, -1], dtype=np.int64))
        flat = g.op("Reshape", [x, flat_shape], f"{stem}.flat")
        one = g.const("ones", np.ones(1, np.float32))
        zero = g.const("zeros", np.zeros(1, np.float32))
        norm = g.op("InstanceNormalization", [flat, one, zero], f"{stem}.inorm", epsilon=GN_EPS)
        back = g.op("Reshape", [norm, shape], f"{stem}.unflat")
        c_shape = g.const("cshape", np.array([channels, 1, 1], dtype=np.int64))
        gamma_c = g.op("Reshape", [gamma, c_shape], f"{stem}.gamma")
        beta_c = g.op("Reshape", [beta, c_shape], f"{stem}.beta")
        scaled = g.op("Mul", [back, gamma_c], f"{stem}.mul")
        return g.op("Add", [scaled, beta_c], f"{stem}.add")
    # GroupNorm(1): image mean, then the variance of the centred values (two passes: E[x^2] - E[x]^2 in
    # fp32 loses too much at 1024 px; ReduceSumSquare accumulates in fp32 too, 3 % off over 16 M values),
    # then a single per-channel affine pass through BatchNormalization of the centred tensor (mean 0):
    # the input is dead after the Sub, so at most two full-size tensors are alive at once.
    mean = g.op("ReduceMean", [x, g.const("axes", _AXES)], f"{stem}.mean", keepdims=1)
    centred = g.op("Sub", [x, mean], f"{stem}.centred")
    var = g.op(
        "ReduceMean",
        [g.op("Mul", [centred, centred], f"{stem}.sq"), g.const("axes", _AXES)],
        f"{stem}.var",
        keepdims=0,
    )
    var_c = g.op("Expand", [var, g.const("clen", np.array([channels], dtype=np.int64))], f"{stem}.var_c")
    zero_c = g.const("zeros_c", np.zeros(channels, np.float32))
    return g.op("BatchNormalization", [centred, gamma, beta, zero_c, var_c], f"{stem}.bn", epsilon=GN_EPS)


def _conv_norm_lrelu(g: _Graph, x: str, spec: ConvSpec, formulation: str, up_ref: str | None = None) -> str:
    if up_ref is not None:
        y = _upsampled_conv(g, x, up_ref, spec, f"{spec.prefix}.1.weight")
    else:
        bias = f"{spec.prefix}.1.bias" if spec.bias else None
        y = _conv(g, x, spec, f"{spec.prefix}.1.weight", bias, formulation)
    y = _group_norm(
        g,
        y,
        spec.out_ch,
        f"{spec.prefix}.2.weight",
        f"{spec.prefix}.2.bias",
        formulation,
        f"{spec.prefix}.gn",
    )
    return g.op("LeakyRelu", [y], f"{spec.prefix}.lrelu", alpha=LRELU_SLOPE)


def _inverted_res_block(g: _Graph, x: str, prefix: str, in_ch: int, out_ch: int, formulation: str) -> str:
    y = x
    for kind, spec in _irb(prefix, in_ch, out_ch):
        if kind == "cnl":
            y = _conv_norm_lrelu(g, y, spec, formulation)
        else:
            y = _conv(g, y, spec, f"{spec.prefix}.weight", None)
            y = _group_norm(
                g,
                y,
                out_ch,
                f"{prefix}.layers.3.weight",
                f"{prefix}.layers.3.bias",
                formulation,
                f"{prefix}.gn",
            )
    if in_ch == out_ch:
        y = g.op("Add", [x, y], f"{prefix}.residual")
    return y


def _resize_like(g: _Graph, x: str, ref: str) -> str:
    x_shape = g.op("Shape", [x], "up.xshape", start=0, end=2)
    ref_hw = g.op("Shape", [ref], "up.refhw", start=2, end=4)
    sizes = g.op("Concat", [x_shape, ref_hw], "up.sizes", axis=0)
    return g.op(
        "Resize",
        [x, "", "", sizes],
        "up",
        mode="linear",
        coordinate_transformation_mode="align_corners",
    )
