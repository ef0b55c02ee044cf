"""The OpenVINO path's shape policy: one static shape at a time (atelier.inference.anime) or one
dynamic-shape model.

Each policy runs in its own process under .venv-ov's interpreter, on the dev generator (untrained weights),
bf16, 2 threads, over a sequence of working sizes that changes shape now and then. Per image: seconds,
including any compilation; at the end, peak RSS. The dynamic policy compiles once, at session creation.

    .venv/bin/python bench/anime_openvino_shapes.py
    .venv/bin/python bench/anime_openvino_shapes.py --sizes 512x512 512x512 384x512 512x512 1024x1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anime import peak_rss_mb  # bench/anime.py

ROOT = Path(__file__).resolve().parents[1]
OPENVINO_PYTHON = ROOT / ".venv-ov" / "bin" / "python"
DEFAULT_SIZES = ["512x512", "512x512", "384x512", "384x512", "512x512", "1024x1024", "1024x1024"]


def worker(policy: str, model: str, sizes: list[str], threads: int) -> dict[str, object]:
    import numpy as np
    import onnxruntime as ort

    from atelier.inference import anime

    t0 = time.perf_counter()
    if policy == "static":
        model_obj = anime.AnimeModel(model, threads=threads, provider="openvino-bf16")
        run = model_obj.run_rgb_blob
    else:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        options = anime.openvino_options(threads)
        session = ort.InferenceSession(model, opts, providers=[("OpenVINOExecutionProvider", options)])

        def run(blob: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {session.get_inputs()[0].name: blob})[0])

    setup = time.perf_counter() - t0
    times = []
    for size in sizes:
        h, w = map(int, size.split("x"))
        blob = np.random.default_rng(h * w).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        t0 = time.perf_counter()
        run(blob)
        times.append(time.perf_counter() - t0)
    return {"setup_s": setup, "times": times, "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, metavar="HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("POLICY", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.sizes, args.threads)))
        return 0

    import onnx
    from rich.console import Console
    from rich.table import Table

    from atelier_dev.models import animegan

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "fast.onnx"
        onnx.save(animegan.build(seed=0, formulation="fast"), str(model))
        env = dict(os.environ, PYTHONPATH=str(ROOT / "layers" / "core" / "python"))
        results = {}
        for policy in ("static", "dynamic"):
            cmd = [str(OPENVINO_PYTHON), __file__, "--threads", str(args.threads), "--sizes", *args.sizes]
            cmd += ["--worker", policy, str(model)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            results[policy] = json.loads(proc.stdout.strip().splitlines()[-1])
    title = f"openvino-bf16 shape policies, dev generator (UNTRAINED weights), {args.threads} threads"
    table = Table(title=title)
    table.add_column("image")
    table.add_column("working size")
    for policy in results:
        table.add_column(f"{policy} s")
    table.add_row("-", "setup", *(f"{r['setup_s']:.2f}" for r in results.values()))
    for i, size in enumerate(args.sizes):
        table.add_row(str(i + 1), size, *(f"{r['times'][i]:.3f}" for r in results.values()))
    table.add_row("-", "peak RSS MB", *(f"{r['peak_rss_mb']:.0f}" for r in results.values()))
    Console(width=120).print(table)
    print(
        "static: atelier.inference.anime.AnimeModel, compiled per working size;"
        " dynamic: one session, any shape"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
