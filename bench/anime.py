"""AnimeGANv2 on ONNX Runtime CPU: a plain session with the reference's pre/post beside
atelier.inference.anime.

Every measurement runs in a fresh subprocess (so peak RSS is that configuration's alone). Models are the
dev generator (seeded, UNTRAINED weights) in two formulations of the same function: ``reference`` is what
torch.onnx.export writes for the PyTorch port, ``fast`` is what ``atelier models build-dev`` installs.

    python bench/anime.py                 # 512 and 1024, 2 threads
    python bench/anime.py --sizes 512 --repeat 5 --int8
    python bench/anime.py --sizes 512 1024 --repeat 8 --mixed   # a new shape every image
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = {
    "plain-reference": "plain session, default options, reference pre/post, torch-export graph",
    "plain-fast": "plain session, default options, reference pre/post, atelier graph",
    "atelier": "atelier.inference.anime.AnimeModel (tuned session, atelier graph, any aspect ratio)",
    "atelier-int8": "AnimeModel on a static int8 QDQ copy of the atelier graph (experiment)",
    "atelier-openvino": "AnimeModel on the openvino-bf16 path (the container image's: onnxruntime-openvino, "
    "run with .venv-ov's interpreter)",
}
OPENVINO_PYTHON = Path(__file__).resolve().parents[1] / ".venv-ov" / "bin" / "python"


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A synthetic photo-like BGR image: smooth gradients, shapes, edges and mild noise."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b = rng.uniform(-1, 1, 2)
        img[..., c] = 128 + 60 * np.sin(xx / w * 3 * a + yy / h * 2 * b + c)
    for _ in range(12):
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(img, centre, int(rng.uniform(4, max(5, min(h, w) / 4))), colour, -1)
        p1 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        p2 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.rectangle(img, p1, p2, colour, 2)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32) * 20, (0, 0), 1.5)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def reference_stylize(session: object, bgr: np.ndarray, size: int) -> np.ndarray:
    """The reference pipeline: centre square crop, resize, /127.5-1, NCHW; output *0.5+0.5 -> uint8."""
    import cv2

    h, w = bgr.shape[:2]
    s = min(h, w)
    crop = bgr[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2]
    rgb = cv2.cvtColor(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LANCZOS4), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    out = session.run(None, {"input": np.ascontiguousarray(x)})[0][0]  # type: ignore[attr-defined]
    img = np.clip(out.transpose(1, 2, 0) * 0.5 + 0.5, 0, 1)
    return cv2.cvtColor((img * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def mixed_sizes(size: int) -> list[tuple[int, int]]:
    """A rotation of photo shapes with ``size`` as the longest side: square, 3:4, 4:3 and 9:16."""
    return [(size, size), (size * 3 // 4, size), (size, size * 3 // 4), (size * 9 // 16, size)]


def worker(
    mode: str, model: str, size: int, repeat: int, threads: int, out_png: str, mixed: bool = False
) -> dict[str, float]:
    """One configuration in this process: median seconds per image and peak RSS.

    ``mixed``: each image has the next shape of :func:`mixed_sizes` (atelier modes only), so every image
    is a new working size, which on the OpenVINO path means a compilation.
    """
    import atelier  # noqa: F401  # isort: skip  (first: it sets the decode limits OpenCV reads on import)
    import cv2
    import onnxruntime as ort

    img = scene(size, size, 7)
    if mode.startswith("plain"):
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

        def run() -> np.ndarray:
            return reference_stylize(session, img, size)

    else:
        from atelier.inference.anime import AnimeModel

        provider = "openvino-bf16" if mode == "atelier-openvino" else "cpu"
        anime_model = AnimeModel(model, threads=threads, max_side=size, provider=provider)

        shapes = [scene(h, w, 7) for h, w in mixed_sizes(size)] if mixed else [img]
        turn = iter(range(1 << 30))

        def run() -> np.ndarray:
            return anime_model.stylize(shapes[next(turn) % len(shapes)], max_side=size)

    t0 = time.perf_counter()
    out = run()  # warm-up (first-run allocations, kernel selection, OpenVINO's compilation)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    cv2.imwrite(out_png, out)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "first_s": first,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_models(folder: Path, int8: bool) -> dict[str, Path]:
    """The dev generator (seed 0) in both formulations, plus an int8 copy when asked."""
    import onnx

    from atelier_dev.models import animegan

    paths = {}
    for formulation in ("reference", "fast"):
        path = folder / f"{formulation}.onnx"
        onnx.save(animegan.build(seed=0, formulation=formulation), str(path))
        paths[formulation] = path
    if int8:
        paths["int8"] = quantize(paths["fast"], folder / "int8.onnx")
    return paths


def quantize(src: Path, dst: Path) -> Path:
    """Static int8 (QDQ, per-channel weights, uint8 activations) of every Conv, calibrated on scenes."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    blobs = []
    for seed in range(4):
        rgb = scene(256, 256, seed)[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
        blobs.append(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(blobs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self.items, None)
            return None if blob is None else {"input": blob}

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return dst


def psnr_files(a: str, b: str) -> float:
    """PSNR in dB of two image files."""
    import cv2

    from atelier.inference.anime import psnr

    return psnr(cv2.imread(a), cv2.imread(b))


def main(argv: list[str] | None = None) -> int:
    """Run every mode at every size, each in its own subprocess, and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also run the int8 experiment")
    parser.add_argument(
        "--openvino-python",
        metavar="PYTHON",
        default=str(OPENVINO_PYTHON),
        help="interpreter of atelier-openvino (default .venv-ov, which `make setup` builds); '' skips it",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="atelier modes only, each image a new shape (square, 3:4, 4:3, 9:16 in turn)",
    )
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "MODEL", "SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        mode, model, size, out = args.worker
        print(json.dumps(worker(mode, model, int(size), args.repeat, args.threads, out, args.mixed)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = build_models(folder, args.int8)
        modes = {"plain-reference": paths["reference"], "plain-fast": paths["fast"], "atelier": paths["fast"]}
        if args.int8:
            modes["atelier-int8"] = paths["int8"]
        if args.openvino_python:
            modes["atelier-openvino"] = paths["fast"]
        if args.mixed:
            modes = {mode: path for mode, path in modes.items() if mode.startswith("atelier")}
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        table = Table(
            title=f"AnimeGANv2 dev generator (UNTRAINED weights), ONNX Runtime CPU, {args.threads} threads"
        )
        against = "atelier" if args.mixed else "plain"
        cols = (
            "size",
            "mode",
            "median s",
            "min s",
            "first s",
            "peak RSS MB",
            "speed-up",
            f"PSNR vs {against} dB",
        )
        for col in cols:
            table.add_column(col)
        for size in args.sizes:
            results = {}
            for mode, model in modes.items():
                out = str(folder / f"{mode}-{size}.png")
                python = args.openvino_python if mode == "atelier-openvino" else sys.executable
                run_env = env
                if mode == "atelier-openvino":  # atelier from the source tree
                    core = str(Path(__file__).resolve().parents[1] / "layers" / "core" / "python")
                    run_env = dict(env, PYTHONPATH=core)
                cmd = [
                    python,
                    __file__,
                    "--repeat",
                    str(args.repeat if size <= 512 else max(2, args.repeat // 2)),
                    "--threads",
                    str(args.threads),
                    *(["--mixed"] if args.mixed else []),
                    "--worker",
                    mode,
                    str(model),
                    str(size),
                    out,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, check=True)
                results[mode] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"png": out}
            base = results["atelier" if args.mixed else "plain-reference"]
            for mode, r in results.items():
                quality = psnr_files(base["png"], r["png"])
                table.add_row(
                    f"up to {size}, 4 shapes in turn" if args.mixed else f"{size}x{size}",
                    mode,
                    f"{r['median_s']:.3f}",
                    f"{r['min_s']:.3f}",
                    f"{r['first_s']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{base['median_s'] / r['median_s']:.2f}x",
                    "-" if r is base else f"{quality:.1f}",
                )
        console.print(table)
        for mode, text in MODES.items():
            if mode in modes:
                console.print(f"  {mode}: {text}")
        console.print("  outputs come from untrained weights: they show the code path, not a trained style")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
