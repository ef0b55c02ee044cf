"""FP16 conversion of EDSR: the graph pass of OLD_REV against ONNX Runtime's converter, side by side.

    python bench/fp16.py            # baseline x2, x3, x4 and full x4 (32 blocks, 256 features), minutes
    python bench/fp16.py --quick    # baseline x2 only

Each model is built by atelier.inference.models.edsr with seeded, untrained weights and converted by both:
the hand-written pass as it was at OLD_REV (loaded from git at run time; measured alone when git or the
revision is missing) and the current atelier.inference.models.fp16 (onnxruntime.transformers.float16).
Columns: PSNR of the fp16 model against the fp32 one on ONNX Runtime's CPU provider (96x96 input, 48x48 for
full EDSR; the provider computes fp16 convs in fp32, so this measures fp16 weight storage), PSNR and max
abs difference of fp16 arithmetic in onnx.reference against fp32 on a 16x16 crop, node and Cast counts,
serialized bytes, and conversion time (median of --repeats). Sessions run on one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator

from atelier.inference.models import edsr, fp16

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "b55f798"  # the last commit with the hand-written graph pass
OLD_PATH = "layers/core/python/atelier/models/fp16.py"
SEED = 0
REFERENCE_SIZE = 16

Converter = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclass(frozen=True)
class Case:
    """One EDSR configuration and the input size for the ONNX Runtime comparison."""

    label: str
    scale: int
    n_resblocks: int
    n_feats: int
    size: int


CASES = [
    Case("baseline x2", 2, 16, 64, 96),
    Case("baseline x3", 3, 16, 64, 96),
    Case("baseline x4", 4, 16, 64, 96),
    Case("full x4", 4, 32, 256, 48),
]


def old_converter() -> Converter | None:
    """convert() of fp16.py as it was at OLD_REV, or None (with a note) when git cannot supply it."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{OLD_REV}:{OLD_PATH}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(
            f"note: the pass at {OLD_REV} is not available from git ({exc}); measuring the current one only\n"
        )
        return None
    spec = importlib.util.spec_from_loader("atelier_fp16_old", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"fp16@{OLD_REV}", "exec"), module.__dict__)
    return cast(Converter, module.convert)


def image_nchw(size: int, seed: int = 5) -> np.ndarray:
    """A deterministic photo-like picture in [0, 255]: smooth colour fields, hard edges, some grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    planes = np.stack(
        [
            127 + 100 * np.sin(xx / 7.0) * np.cos(yy / 11.0),
            127 + 100 * np.sin((xx + yy) / 13.0),
            127 + 100 * np.cos(xx / 5.0 - yy / 9.0),
        ]
    )
    planes[:, (xx // 24 + yy // 24) % 2 == 0] *= 0.7
    planes += rng.normal(0, 4, planes.shape)
    return np.ascontiguousarray(np.clip(planes, 0, 255)[None], dtype=np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio for [0, 255] signals."""
    return float(10 * np.log10(255.0**2 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """One inference on ONNX Runtime's CPU provider, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {edsr.INPUT_NAME: x})[0])


def run_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """One inference in onnx.reference, which computes in the graph's own types (fp16 here)."""
    outputs = cast(list[np.ndarray], ReferenceEvaluator(model).run(None, {edsr.INPUT_NAME: x}))
    return np.asarray(outputs[0], dtype=np.float32)


def timed_convert(convert: Converter, model: onnx.ModelProto, repeats: int) -> tuple[onnx.ModelProto, float]:
    """The converted model and the median conversion time in seconds."""
    times, half = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        half = convert(model)
        times.append(time.perf_counter() - start)
    assert half is not None
    return half, statistics.median(times)


def measure(case: Case, converters: dict[str, Converter], repeats: int) -> list[str]:
    """Table rows for one model, one per converter."""
    model = edsr.build(case.scale, case.n_resblocks, case.n_feats, seed=SEED)
    x = image_nchw(case.size)
    crop = np.ascontiguousarray(x[:, :, :REFERENCE_SIZE, :REFERENCE_SIZE])
    full, full_crop = run_ort(model, x), run_ort(model, crop)
    rows = []
    for name, convert in converters.items():
        half, seconds = timed_convert(convert, model, repeats)
        try:
            onnx.checker.check_model(half, full_check=True)
            checker = "passes"
        except onnx.checker.ValidationError as exc:
            checker = f"fails: {str(exc).splitlines()[0][:60]}"
        cpu = psnr(run_ort(half, x), full)
        reduced = run_reference(half, crop)
        ref, max_abs = psnr(reduced, full_crop), float(np.abs(reduced - full_crop).max())
        casts = sum(node.op_type == "Cast" for node in half.graph.node)
        size = f"{case.size}x{case.size}"
        rows.append(
            f"| {case.label} | {name} | {cpu:.1f} dB ({size}) | {ref:.1f} dB (max abs {max_abs:.2f}) "
            f"| {len(half.graph.node)} ({casts}) | {half.ByteSize():,} | {seconds * 1e3:.0f} ms "
            f"| {checker} |"
        )
        print(f"  {case.label}, {name}: done", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    """Print the Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="baseline x2 only")
    parser.add_argument("--repeats", type=int, default=3, help="conversions timed per model (median)")
    args = parser.parse_args()

    converters: dict[str, Converter] = {}
    old = old_converter()
    if old is not None:
        converters[f"graph pass ({OLD_REV})"] = old
    converters["ORT float16"] = fp16.convert
    cases = CASES[:1] if args.quick else CASES

    print(
        f"| model | converter | ORT CPU, fp16 model vs fp32 | fp16 arithmetic (onnx.reference) vs fp32, "
        f"{REFERENCE_SIZE}x{REFERENCE_SIZE} | nodes (Cast) | bytes | convert (median of {args.repeats}) "
        "| onnx.checker (full) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for case in cases:
        for row in measure(case, converters, args.repeats):
            print(row, flush=True)


if __name__ == "__main__":
    main()
