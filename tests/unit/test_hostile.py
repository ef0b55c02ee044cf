"""Hostile input: decompression bombs, OpenCV's own limit, and a bounded byte-level fuzz run.

Each runs in a fresh interpreter: RSS is measured without the test runner's noise, OpenCV's limits are
read at its first import, and a crash in a decoder fails the test instead of killing the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests import imaging

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object on its last line."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


REJECT_AND_MEASURE = """
    import json, sys, psutil
    from atelier.entrypoints import lambda_style  # noqa: F401  the import path of every handler
    from atelier.imaging.decode import decode
    from atelier.domain.errors import ImageRejected
    data = open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, "rb").read()
    proc = psutil.Process()
    before = proc.memory_info().rss
    try:
        decode(data)
        verdict = "accepted"
    except ImageRejected as exc:
        verdict = exc.reason
    after = proc.memory_info().rss
    with open("/proc/self/status") as fh:
        hwm = [int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM")][0]
    print(json.dumps({{"verdict": verdict, "grew": after - before, "hwm_over_before": hwm - before}}))
"""

LAMBDA_ENV = {
    "ATELIER_BUCKET": "b",
    "ATELIER_STATUS_TABLE": "s",
    "ATELIER_IDEMPOTENCY_TABLE": "i",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def test_50k_by_50k_png_header_is_rejected_before_any_pixel_buffer(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(imaging.png_header_only(50_000, 50_000))
    assert path.stat().st_size < 1024
    result = run_python(REJECT_AND_MEASURE.format(path=str(path)), LAMBDA_ENV)
    assert result["verdict"] == "too_many_pixels"
    assert int(result["hwm_over_before"]) < 10 * 1024 * 1024


def test_valid_100_mp_png_of_a_few_hundred_kb_is_rejected_at_the_default_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(imaging.valid_grey_png(10_000, 10_000))
    assert path.stat().st_size < 1024 * 1024
    result = run_python(REJECT_AND_MEASURE.format(path=str(path)), LAMBDA_ENV)
    assert result["verdict"] == "too_many_pixels"
    assert int(result["hwm_over_before"]) < 60 * 1024 * 1024


OPENCV_LIMIT = """
    import json, sys
    import numpy as np
    if {cv2_first}:
        import cv2
    from atelier.entrypoints import lambda_style  # noqa: F401  imports the package the way handlers do
    import cv2
    data = np.frombuffer(open({path!r}, "rb").read(), np.uint8)
    try:  # OpenCV alone, past Atelier's header check
        decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) is not None
    except cv2.error as exc:
        decoded = False
        assert "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
    print(json.dumps({{"decoded": decoded}}))
"""


def test_opencv_pixel_limit_is_live_when_the_package_is_imported_first(tmp_path: Path) -> None:
    path = tmp_path / "4mp.png"
    path.write_bytes(imaging.valid_grey_png(2000, 2000))
    env = {**LAMBDA_ENV, "ATELIER_MAX_PIXELS": "1000000"}
    live = run_python(OPENCV_LIMIT.format(cv2_first=False, path=str(path)), env)
    assert live["decoded"] is False
    # the control: cv2 loaded before the package never sees the limit (so the check above can fail)
    late = run_python(OPENCV_LIMIT.format(cv2_first=True, path=str(path)), env)
    assert late["decoded"] is True


FUZZ = """
    import json, random, time
    from atelier.imaging.decode import decode  # first: the package sets OpenCV's limits before cv2 loads
    import numpy as np
    import cv2
    from atelier.domain.errors import ImageRejected
    from tests import imaging

    rng = random.Random(20261122)
    img = imaging.photo(96, 72)
    alpha = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    alpha[:10, :, 3] = 0
    seeds = [
        imaging.jpeg(img), imaging.jpeg(img, 40),
        imaging.pil_bytes(imaging.Image.fromarray(img[:, :, ::-1]), "JPEG", progressive=True),
        imaging.with_orientation(img, 6),
        imaging.png(img), imaging.png(alpha), imaging.png(img.astype(np.uint16) * 257),
        imaging.webp(img), imaging.webp(img, 101), imaging.webp(alpha),
    ]

    def mutate(data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(6)
            i = rng.randrange(len(b)) if b else 0
            if op == 0 and b:
                b[i] ^= 1 << rng.randrange(8)
            elif op == 1 and b:
                b[i] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
            elif op == 2:
                b = b[: rng.randrange(len(b) + 1)]
            elif op == 3:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            elif op == 4 and len(b) > 32:
                j = rng.randrange(min(len(b), 64))  # header fields: sizes, lengths, chunk types
                b[j] = rng.randrange(256)
            elif op == 5 and b:
                del b[i : i + rng.randint(1, 32)]
        return bytes(b)

    counts = {"accepted": 0}
    other = []
    start = time.monotonic()
    n = 0
    while n < 30000 and time.monotonic() - start < 75:
        data = mutate(rng.choice(seeds))
        n += 1
        try:
            d = decode(data)
            assert d.bgr.dtype == np.uint8 and d.bgr.ndim == 3 and d.bgr.shape[2] == 3
            counts["accepted"] += 1
        except ImageRejected as exc:
            counts[exc.reason] = counts.get(exc.reason, 0) + 1
        except Exception as exc:  # anything else is a bug
            other.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"n": n, "counts": counts, "other": other[:10], "seconds": time.monotonic() - start}))
"""


@pytest.mark.slow
def test_fuzzed_jpeg_png_webp_raise_nothing_but_the_rejection_type() -> None:
    result = run_python(FUZZ, timeout=110)
    assert result["other"] == [], result
    assert int(result["n"]) >= 10000, result
    counts = result["counts"]
    assert isinstance(counts, dict) and counts["accepted"] > 0 and counts.get("corrupt", 0) > 0, result
