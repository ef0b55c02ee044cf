"""The safe decoder against its previous version, side by side in one run: time, and peak memory of inspect.

    python bench/decode.py                 # baseline = the decoder at BASE_REV (git), before the whole-file
    python bench/decode.py --repeats 7     #   checks, libjpeg's warnings and the reduced decode of inspect

Tables:
1. decode time of real-sized photos (12 MP JPEG, PNG, WebP), old and new interleaved, median and ratio;
2. a PNG whose IDAT inflates to 2.7 GB for 64x64 pixels: old (OpenCV inflates it all) against new;
3. peak RSS of `inspect`'s pHash on 49-50 MP files inside the caps, each in a fresh process: old (full
   decode) against new (atelier.imaging.preview), beside a process that only imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE_REV = "a5550a5"  # the last commit before the decoder's fidelity work

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import atelier  # noqa: E402  (sets OpenCV's limits before cv2 loads)
from atelier.domain.errors import ImageRejected  # noqa: E402
from atelier.domain.limits import Limits  # noqa: E402
from atelier.imaging.decode import decode  # noqa: E402
from tests import corpus, imaging  # noqa: E402

assert atelier


def old_decoder() -> ModuleType:
    """decode.py as it was at BASE_REV, loaded beside the current one."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASE_REV}:layers/core/python/atelier/decode.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("atelier_decode_base", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, "decode@" + BASE_REV, "exec"), module.__dict__)
    return module


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of(width: int, height: int, depth: int, colour: int, row: bytes, extra_zeros: int = 0) -> bytes:
    """A PNG of identical rows, streamed through zlib, with ``extra_zeros`` inflated bytes past the rows."""
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    block = bytes(1 << 20)
    parts += [comp.compress(block) for _ in range(extra_zeros >> 20)]
    body = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def photos() -> dict[str, bytes]:
    bgr = corpus.sensor_grain(corpus.at_pixels(corpus.photo("astronaut"), 12_000_000))
    return {
        "12 MP JPEG q90": imaging.jpeg(bgr, 90),
        "12 MP PNG": imaging.png(bgr),
        "12 MP WebP q90": imaging.webp(bgr, 90),
    }


def time_decodes(repeats: int) -> None:
    base = old_decoder()
    limits = Limits()
    print("| file | size MiB | old ms (median) | new ms (median) | new / old |")
    print("|---|---:|---:|---:|---:|")
    for name, data in photos().items():
        old, new = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine
            t0 = time.perf_counter()
            base.decode(data, limits)
            old.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            decode(data, limits)
            new.append(time.perf_counter() - t0)
        mo, mn = statistics.median(old) * 1000, statistics.median(new) * 1000
        print(f"| {name} | {len(data) / 2**20:.1f} | {mo:.0f} | {mn:.0f} | {mn / mo:.2f} |")


def time_bomb() -> None:
    base = old_decoder()
    data = png_of(64, 64, 8, 6, b"\x00" + bytes(64 * 4), extra_zeros=int(2.7e9))
    print(f"\nIDAT bomb: {len(data) / 2**20:.1f} MiB file, 64x64 RGBA, image data inflating to 2.7 GB\n")
    print("| decoder | verdict | seconds |")
    print("|---|---|---:|")
    for label, run in (("old", base.decode), ("new", decode)):
        t0 = time.perf_counter()
        try:
            run(data, Limits())
            verdict = "rendered"
        except ImageRejected as exc:
            verdict = exc.reason
        print(f"| {label} | {verdict} | {time.perf_counter() - t0:.2f} |")


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import atelier
from atelier.imaging import phash
mode, path = sys.argv[2], sys.argv[3]
data = open(path, "rb").read() if path != "-" else b""
t0 = time.perf_counter()
if mode == "old":
    from bench.decode import old_decoder
    bgr = old_decoder().decode(data).bgr
    digest = phash.to_hex(phash.phash(bgr))
elif mode == "new":
    from atelier.imaging.preview import preview
    digest = phash.to_hex(phash.phash(preview(data)[0]))
else:
    from bench.decode import old_decoder
    from atelier.imaging.preview import preview
    digest = "-"
seconds = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"rss": rss, "s": seconds, "hash": digest}))
"""


def inspect_memory(folder: Path) -> None:
    rng = np.random.default_rng(0)
    big = corpus.at_pixels(corpus.photo("astronaut"), 49_000_000)
    flat = np.full((7000, 7000, 3), rng.integers(0, 255, 3), np.uint8)
    files = {
        "49 MP RGBA 16-bit PNG (flat)": png_of(
            7000, 7000, 16, 6, b"\x00" + np.tile(np.array([0x12, 0x34] * 4, np.uint8), 7000).tobytes()
        ),
        "49 MP JPEG q90": imaging.jpeg(big, 90),
        "49 MP WebP q80 (lossy)": imaging.webp(big[:, : min(big.shape[1], 16383)], 80),
        "49 MP WebP lossless (flat)": imaging.webp(flat, 101),
    }
    print("\n| file | size MiB | mode | peak RSS MiB | seconds | pHash |")
    print("|---|---:|---|---:|---:|---|")
    idle = _child("import-only", "-")
    print(f"| (nothing) | - | imports only | {idle['rss']:.0f} | - | - |")
    for name, data in files.items():
        path = folder / (name.split()[2] + ".bin")
        path.write_bytes(data)
        for mode in ("old", "new"):
            r = _child(mode, str(path))
            print(
                f"| {name} | {len(data) / 2**20:.1f} | {mode} | {r['rss']:.0f} | {r['s']:.2f} | {r['hash']} |"
            )


def _child(mode: str, path: str) -> dict[str, float | str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), mode, path], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float | str] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-bomb", action="store_true")
    args = parser.parse_args()
    print(f"baseline {BASE_REV}; decode time, {args.repeats} interleaved runs each\n")
    time_decodes(args.repeats)
    if not args.skip_bomb:
        time_bomb()
    with tempfile.TemporaryDirectory() as folder:
        inspect_memory(Path(folder))


if __name__ == "__main__":
    cv2.setNumThreads(1)
    main()
