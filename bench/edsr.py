"""Benchmark EDSR super-resolution: whole-image against tiled, time and peak memory, CPU or CUDA.

Every measurement runs in a fresh subprocess, so peak RSS (and GPU memory) belongs to it alone. The
models are built here with seeded, untrained weights: the cost is that of the real architecture, the
pictures are not super-resolved.

    python bench/edsr.py                                  # CPU: baseline x2/x3/x4 at 128, 256, 512 px
    python bench/edsr.py --provider cuda --full           # GPU: 1920x1080 and 1, 4, 16 MP, baseline + full
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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

CPU_SIZES = ["128x128", "256x256", "512x512"]
GPU_SIZES = ["1920x1080", "1024x1024", "2048x2048", "4096x4096"]
H100_FP16_TFLOPS = 989.0  # dense FP16 tensor-core peak, H100 SXM; pass --peak-tflops for other cards


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (height, width)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like BGR uint8 image: smooth colour fields with edges and some grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            127 + 100 * np.sin(xx / 37.0) * np.cos(yy / 53.0),
            127 + 100 * np.sin((xx + yy) / 71.0),
            127 + 100 * np.cos(xx / 23.0 - yy / 41.0),
        ],
        axis=2,
    )
    base += rng.normal(0, 6, base.shape).astype(np.float32)
    base[(xx // 64 + yy // 64) % 2 == 0] *= 0.7  # hard edges
    return np.clip(base, 0, 255).astype(np.uint8)


class GpuMemorySampler:
    """Peak GPU memory of this process, sampled with nvidia-smi (includes the CUDA context)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        """Start sampling in a background thread."""
        self.peak_mib = 0
        self.available = True
        self._stop = threading.Event()
        self._interval = interval_s
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> int:
        """MiB used by this process now, or -1 when nvidia-smi cannot tell."""
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return -1
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[0] == str(os.getpid()) and parts[1].isdigit():
                return int(parts[1])
        return 0

    def _loop(self) -> None:
        """Sample until stopped."""
        while not self._stop.is_set():
            used = self._sample()
            if used < 0:
                self.available = False
                return
            self.peak_mib = max(self.peak_mib, used)
            self._stop.wait(self._interval)

    def stop(self) -> int | None:
        """Stop and return the peak in MiB (None when nvidia-smi is unavailable)."""
        self._stop.set()
        self._thread.join()
        return self.peak_mib if self.available else None


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process: time, peak RSS, peak GPU memory, optional comparisons."""
    from atelier.inference import tiling
    from atelier.inference.upscale import Upscaler

    sampler = GpuMemorySampler() if spec["provider"] != "cpu" else None
    height, width = spec["size"]
    image = sample_image(height, width)
    upscaler = Upscaler(
        spec["model"], provider=spec["provider"], threads=spec["threads"], precision=spec["precision"]
    )
    tile = spec["tile"]
    choice = upscaler.plan(height, width, tile, spec.get("batch"))
    rows = tiling.split_axis(height, choice.tile, upscaler.halo)
    cols = tiling.split_axis(width, choice.tile, upscaler.halo)
    window = f"{cols[0][3] - cols[0][2]}x{rows[0][3] - rows[0][2]}"
    result: dict[str, Any] = {
        "tile": choice.tile,
        "batch": choice.batch,
        "tiles": f"{len(rows) * len(cols)} of {window}" if choice.tile else "1 (whole)",
        "providers": upscaler.providers,
    }
    if spec["mode"] == "time":
        out = np.empty((height * upscaler.scale, width * upscaler.scale, 3), np.uint8)
        times = []
        for i in range(spec["repeats"] + 1):  # the first run warms up (allocations, kernel choice)
            start = time.perf_counter()
            upscaler.upscale(image, tile=tile, batch=spec.get("batch"), out=out)
            if i > 0:
                times.append(time.perf_counter() - start)
        result["seconds"] = statistics.median(times)
        result["all_seconds"] = times
    elif spec["mode"] == "diff":  # tiled against whole-image, both in float32 output
        whole = upscaler.upscale(image, tile=0, dtype=np.float32)
        tiled = upscaler.upscale(image, tile=tile, batch=spec.get("batch"), dtype=np.float32)
        result["max_abs_diff"] = float(np.abs(whole - tiled).max())
    elif spec["mode"] == "psnr":  # this precision against an fp32 session on the same provider
        reference = Upscaler(
            spec["model"], provider=spec["provider"], threads=spec["threads"], precision="fp32"
        )
        a = upscaler.upscale(image, tile=tile, dtype=np.float32)
        b = reference.upscale(image, tile=tile, dtype=np.float32)
        mse = float(np.mean((np.clip(a, 0, 255) - np.clip(b, 0, 255)) ** 2))
        result["psnr_db"] = 10 * np.log10(255.0**2 / max(mse, 1e-12))
        result["max_abs_diff"] = float(np.abs(a - b).max())
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if sampler is not None:
        result["peak_gpu_mib"] = sampler.stop()
    return result


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return what it reports."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed: {spec}\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


Models = dict[str, tuple[Path, float, int]]


def build_models(directory: Path, scales: list[int], full: bool) -> Models:
    """Write the EDSR models to benchmark: name -> (path, conv MACs per input pixel, halo)."""
    import onnx

    from atelier.inference.models import edsr

    models = {}
    variants = [("baseline", edsr.BASELINE)] + ([("full", edsr.FULL)] if full else [])
    for name, config in variants:
        for scale in scales:
            model = edsr.build(scale, **config)
            path = directory / f"edsr_{name}_x{scale}.onnx"
            onnx.save(model, str(path))
            halo = edsr.receptive_field(config["n_resblocks"], scale)
            models[f"{name} x{scale}"] = (path, edsr.conv_macs_per_input_pixel(model), halo)
    return models


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell, or a dash."""
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    """Parse arguments, run the measurements, print markdown tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default="cpu")
    parser.add_argument("--scales", type=int, nargs="+", default=None, help="default: 2 3 4 (CPU), 4 (GPU)")
    parser.add_argument("--sizes", nargs="+", default=None, help="WIDTHxHEIGHT inputs")
    parser.add_argument(
        "--tiles", type=int, nargs="+", default=None, help="default: 128 256 (CPU), auto (GPU)"
    )
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also full EDSR (32 blocks, 256 features)")
    parser.add_argument("--no-diff", action="store_true", help="skip the tiled-vs-whole comparison")
    parser.add_argument("--peak-tflops", type=float, default=H100_FP16_TFLOPS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    from atelier.inference import tiling

    gpu = args.provider != "cpu"
    scales = args.scales or ([4] if gpu else [2, 3, 4])
    sizes = [parse_size(s) for s in (args.sizes or (GPU_SIZES if gpu else CPU_SIZES))]
    tiles: list[int | None] = list(args.tiles) if args.tiles else ([None] if gpu else [128, 256])
    precision = "fp16" if gpu else "fp32"
    with tempfile.TemporaryDirectory(prefix="edsr-bench-") as tmp:
        models = build_models(Path(tmp), scales, args.full)
        print(f"provider {args.provider}, {args.threads} threads, precision {precision}")
        print("seeded untrained weights: the real cost, not real super-resolution")
        print(f"median of {args.repeats} runs after one warm-up; each row a fresh process")
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
        header = "| model | input | mode | tiles (window) x batch | time s | MP/s in | peak RSS MiB |"
        rule = "|---|---|---|---|---:|---:|---:|"
        if gpu:
            header += " peak GPU MiB | % FP16 peak |"
            rule += "---:|---:|"
        print(header)
        print(rule)
        quality: list[list[str]] = []
        for name, (path, macs, halo) in models.items():
            for h, w in sizes:
                base = {
                    "model": str(path),
                    "size": [h, w],
                    "provider": args.provider,
                    "threads": args.threads,
                    "precision": precision,
                    "repeats": args.repeats,
                    "batch": args.batch,
                }
                # a tile plan of one window is whole-image inference again: not worth a row of its own
                split = [t for t in tiles if t is None or tiling.count_tiles(h, w, t, halo) > 1]
                modes = (
                    [("tiled", t) for t in split] if gpu else [("whole", 0), *(("tiled", t) for t in split)]
                )
                for mode, t in modes:
                    r = measure({**base, "mode": "time", "tile": t})
                    cells = [
                        name,
                        f"{w}x{h}",
                        mode,
                        f"{r['tiles']} x {r['batch']}",
                        fmt(r["seconds"]),
                        fmt(h * w / 1e6 / r["seconds"], 3),
                        fmt(r["peak_rss_mib"], 0),
                    ]
                    if gpu:
                        share = 2 * macs * h * w / r["seconds"] / (args.peak_tflops * 1e12) * 100
                        cells += [fmt(r.get("peak_gpu_mib"), 0), fmt(share, 1)]
                    print("| " + " | ".join(cells) + " |", flush=True)
                if args.no_diff or not split or (gpu and h * w > 2_100_000):
                    continue
                tile = split[0]
                d = measure({**base, "mode": "diff", "tile": tile})
                row = [name, f"{w}x{h}", f"{d['tiles']} x {d['batch']}", f"{d['max_abs_diff']:.2e}"]
                if gpu:
                    row.append(fmt(measure({**base, "mode": "psnr", "tile": tile})["psnr_db"], 1))
                quality.append(row)
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
        if quality:
            print(
                "\n| model | input | tiles (window) x batch | max abs diff tiled vs whole, 0-255 scale |",
                end="",
            )
            print(" FP16 vs FP32 PSNR dB |" if gpu else "")
            print("|---|---|---|---:|" + ("---:|" if gpu else ""))
            for row in quality:
                print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
