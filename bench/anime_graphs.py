"""Two or more AnimeGANv2 ONNX graphs side by side: live tensors, arena peak, and time in one process.

For comparing a change to the generator graph against its baseline (build the baseline from the earlier
commit, e.g. ``git show REV:layers/core/python/atelier/models/animegan.py > /tmp/old_animegan.py`` and
``animegan.build()`` from it). Without arguments it measures the current dev generator alone.

    python bench/anime_graphs.py [OLD.onnx NEW.onnx] --size 1024 --processes 5   # memory, fresh processes
    python bench/anime_graphs.py OLD.onnx NEW.onnx --size 512 --time             # interleaved timing

Memory, per graph and process: ``live MB`` is the most bytes live in malloc during one run with ONNX
Runtime's arena off (an LD_PRELOAD counter, bench/native/malloc_peak.c, built with cc), which is what the
run really needs alive; ``arena peak MB`` is the whole process's VmHWM with atelier's shared arena (what a
Lambda container would hold). Several processes, because node order, and with it the live set, can differ
between processes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from anime import peak_rss_mb  # bench/anime.py

HERE = Path(__file__).resolve().parent
HOOK_SRC = HERE / "native" / "malloc_peak.c"
HOOK_LIB = HERE / "out" / "malloc_peak.so"


def build_hook() -> Path:
    """Compile the malloc counter (once)."""
    if not HOOK_LIB.exists() or HOOK_LIB.stat().st_mtime < HOOK_SRC.stat().st_mtime:
        HOOK_LIB.parent.mkdir(parents=True, exist_ok=True)
        flags = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]
        subprocess.run(["cc", *flags, str(HOOK_SRC), "-o", str(HOOK_LIB)], check=True)
    return HOOK_LIB


def _input(size: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)


def measure_live(model: str, size: int) -> float:
    """MB live in malloc at the peak of one run (arena off), above what was live before it."""
    import onnxruntime as ort

    from atelier.inference import sessions

    counter = ctypes.CDLL(None)
    counter.malloc_peak_live.restype = ctypes.c_long
    counter.malloc_peak_peak.restype = ctypes.c_long
    opts = sessions.session_options(2)
    opts.enable_cpu_mem_arena = False
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = _input(size)
    session.run(None, {"input": x})
    before = counter.malloc_peak_live()
    counter.malloc_peak_reset()
    session.run(None, {"input": x})
    return (counter.malloc_peak_peak() - before) / 2**20


def measure_arena(model: str, size: int) -> float:
    """Peak RSS (VmHWM) in MB of a process running the model twice through atelier's shared arena."""
    import onnxruntime as ort

    from atelier.inference import sessions

    session = ort.InferenceSession(
        model, sessions.session_options(2, max_side=size), providers=["CPUExecutionProvider"]
    )
    x = _input(size)
    for _ in range(2):
        session.run(None, {"input": x})
    return peak_rss_mb()


def interleaved(models: list[str], size: int, rounds: int) -> list[float]:
    """Median seconds per run of each model, the models taking turns round by round in this process."""
    import onnxruntime as ort

    from atelier.inference import sessions

    opened = [
        ort.InferenceSession(m, sessions.session_options(2), providers=["CPUExecutionProvider"])
        for m in models
    ]
    x = _input(size)
    for s in opened:
        s.run(None, {"input": x})
    times: list[list[float]] = [[] for _ in opened]
    for _ in range(rounds):
        for i, s in enumerate(opened):
            t0 = time.perf_counter()
            s.run(None, {"input": x})
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", help="ONNX files (default: the dev generator, seed 0)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--time", action="store_true", help="interleaved timing instead of memory")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", choices=["live", "arena"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        fn = measure_live if args.worker == "live" else measure_arena
        print(json.dumps(fn(args.models[0], args.size)))
        return 0

    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        models = args.models
        if not models:
            import onnx

            from atelier_dev.models import animegan

            models = [str(Path(tmp) / "dev.onnx")]
            onnx.save(animegan.build(seed=0), models[0])
        if args.time:
            medians = interleaved(models, args.size, args.rounds)
            table = Table(title=f"interleaved, {args.size}², {args.rounds} rounds, 2 threads")
            for col in ("model", "median s", f"speed-up vs {Path(models[0]).name}"):
                table.add_column(col)
            for m, t in zip(models, medians, strict=True):
                table.add_row(m, f"{t:.3f}", f"{medians[0] / t:.3f}x")
            Console(width=160).print(table)
            return 0
        hook = build_hook()
        table = Table(title=f"memory per process, {args.size}², 2 threads")
        for col in ("model", "live MB (arena off)", "arena peak MB (VmHWM)"):
            table.add_column(col)
        for m in models:
            live, arena = [], []
            for _ in range(args.processes):
                base = [sys.executable, __file__, m, "--size", str(args.size), "--worker"]
                env = dict(os.environ, LD_PRELOAD=str(hook))
                out = subprocess.run([*base, "live"], env=env, capture_output=True, text=True, check=True)
                live.append(float(out.stdout.split()[-1]))
                out = subprocess.run([*base, "arena"], capture_output=True, text=True, check=True)
                arena.append(float(out.stdout.split()[-1]))
            table.add_row(m, " ".join(f"{v:.0f}" for v in live), " ".join(f"{v:.0f}" for v in arena))
        Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
