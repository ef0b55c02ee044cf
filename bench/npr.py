"""Benchmark the four CPU styles against the reference pipeline (OpenCV photo + xphoto, 1920 px cap).

Each cell is a fresh process that does what a Lambda does for one style: read the JPEG bytes, decode,
render, encode a JPEG (quality 90), with ``cv2.setNumThreads(2)``. It reports wall times and its peak RSS.
The "Lambda cost" section prices 1,000 6 MP photos in all four styles on Lambda at 1,769 MB, which is one
vCPU, from a second run of the 6 MP cells with ``cv2.setNumThreads(1)``.
The reference needs ``cv2.xphoto`` (opencv-contrib), so it runs in its own virtualenv, bench/.venv-ref,
made on first use with ``python3 -m venv`` and pip (or ahead of time with ``--setup-ref``).

    python bench/npr.py            # 1, 6, 12 and 24 MP, 3 processes per cell
    python bench/npr.py --quick    # 1 and 6 MP, 1 process per cell
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REF_VENV = HERE / ".venv-ref"
REF_PACKAGES = ["opencv-contrib-python-headless==4.10.0.84", "numpy>=2.0,<2.5"]
STYLES = ("sketch", "pencil", "oil", "watercolor")
SIZES = {1: (1224, 816), 6: (3072, 2048), 12: (4240, 2832), 24: (6000, 4000)}
CAP = 1920
THREADS = 2
WARM_REPEATS = 3

# Lambda, x86_64, on-demand: at 1,769 MB a function has the equivalent of one vCPU.
LAMBDA_MB = 1769
LAMBDA_GB_SECOND_USD = 0.0000166667
LAMBDA_REQUEST_USD = 0.20 / 1e6
LAMBDA_PHOTOS = 1000
LAMBDA_MP = 6


# ---------------------------------------------------------------- test photos


def make_photo(mp: int) -> Path:
    """A JPEG of about ``mp`` megapixels: skimage's coffee photo upscaled, plus fine film grain."""
    import cv2
    import numpy as np
    from skimage import data

    w, h = SIZES[mp]
    path = OUT / "photos" / f"coffee_{mp}mp.jpg"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    src = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    img = cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    rng = np.random.default_rng(mp)
    # Luminance grain about 1.5 px across with a spread of 5 levels, plus 1.5 levels of colour noise.
    grain = np.asarray(
        cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 0.7), np.float32
    )
    grain *= 5.0 / float(grain.std())
    img += grain[:, :, None]
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * 1.5
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), out, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


# ---------------------------------------------------------------- worker (runs in a fresh process)


def _reference_render(cv2: Any, bgr: Any, style: str) -> Any:
    """The reference pipeline: cap at 1920 px; pencil and oil at half of that, enlarged back."""
    h, w = bgr.shape[:2]
    if max(h, w) > CAP:
        s = CAP / max(h, w)
        bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    h, w = bgr.shape[:2]
    if style == "sketch":
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        blur = cv2.GaussianBlur(255 - gray, (21, 21), 0)
        return cv2.cvtColor(cv2.divide(gray, 255 - blur, scale=256), cv2.COLOR_GRAY2BGR)
    if style == "watercolor":
        return cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)
    half = cv2.resize(bgr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if style == "pencil":
        _, out = cv2.pencilSketch(half, sigma_s=60, sigma_r=0.07, shade_factor=0.02)
    else:
        out = cv2.xphoto.oilPainting(half, 7, 1)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM, MiB); ru_maxrss would carry the parent's across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(impl: str, style: str, path: str, warm: int, threads: int = THREADS) -> None:
    """Decode, render, encode once (cold), then time ``warm`` more renders; print one JSON line."""
    t0 = time.perf_counter()
    if impl == "atelier":
        # atelier first: it sets OpenCV's decode limits, which OpenCV reads once when it loads.
        from atelier.imaging import styles as atelier_styles
    import cv2
    import numpy as np

    cv2.setNumThreads(threads)
    if impl == "atelier":

        def render(bgr: Any, name: str) -> Any:
            return atelier_styles.get(name).render(bgr)
    else:

        def render(bgr: Any, name: str) -> Any:
            return _reference_render(cv2, bgr, name)

    t_import = time.perf_counter() - t0
    data = Path(path).read_bytes()
    names = STYLES if style == "all" else (style,)
    t = time.perf_counter()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    t_decode = time.perf_counter() - t
    cold: dict[str, float] = {}
    encode_each: dict[str, float] = {}
    encoded = 0
    for name in names:
        t = time.perf_counter()
        out = render(bgr, name)
        cold[name] = time.perf_counter() - t
        t = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 90])
        encode_each[name] = time.perf_counter() - t
        encoded += len(buf) if ok else 0
        del out, buf
    t_encode = sum(encode_each.values())
    peak_mb = peak_rss_mb()
    warm_times: dict[str, list[float]] = {name: [] for name in names}
    totals = []
    for _ in range(warm):
        t_all = time.perf_counter()
        for name in names:
            t = time.perf_counter()
            render(bgr, name)
            warm_times[name].append(time.perf_counter() - t)
        totals.append(time.perf_counter() - t_all)
    print(
        json.dumps(
            {
                "import": t_import,
                "decode": t_decode,
                "cold": cold,
                "encode": t_encode,
                "encode_each": encode_each,
                "threads": threads,
                "pipeline": t_decode + sum(cold.values()) + t_encode,
                "warm": {k: statistics.median(v) for k, v in warm_times.items() if v},
                "warm_total": statistics.median(totals) if totals else None,
                "peak_mb": peak_mb,
                "bytes": encoded,
            }
        )
    )


# ---------------------------------------------------------------- driver


def ensure_ref_venv() -> Path:
    """bench/.venv-ref/bin/python, created with OpenCV-contrib on first use."""
    py = REF_VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {REF_VENV} ({', '.join(REF_PACKAGES)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *REF_PACKAGES], check=True)
    return py


def run_cell(
    python: str, impl: str, style: str, photo: Path, warm: int, threads: int = THREADS
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE)  # so ``import npr`` works in the reference venv, which lacks atelier
    code = "import sys, npr; npr.worker(*sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5]))"
    res = subprocess.run(
        [python, "-c", code, impl, style, str(photo), str(warm), str(threads)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{impl}/{style}/{photo.name} failed:\n{res.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def median_of(runs: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
    vals = [r[key][sub] if sub else r[key] for r in runs]
    return float(statistics.median(vals))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares exponent b in y ~ x^b."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else float("nan")


def fidelity(photo: Path) -> list[tuple[str, float, float, float, float]]:
    """Full-size SSIM (grey and colour) of Atelier's pencil and watercolour against OpenCV's originals."""
    import cv2
    from skimage.metrics import structural_similarity

    from atelier.imaging.styles import pencil, watercolor

    cv2.setNumThreads(THREADS)
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    rows = []
    pairs = (
        (
            "pencil",
            pencil.render,
            lambda b: cv2.pencilSketch(b, sigma_s=60, sigma_r=0.07, shade_factor=0.02)[1],
        ),
        ("watercolor", watercolor.render, lambda b: cv2.stylization(b, sigma_s=60, sigma_r=0.45)),
    )
    for name, ours_fn, ref_fn in pairs:
        t = time.perf_counter()
        ref = ref_fn(bgr)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = ours_fn(bgr)
        t_ours = time.perf_counter() - t
        grey = structural_similarity(
            cv2.cvtColor(ours, cv2.COLOR_BGR2GRAY), cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY)
        )
        colour = structural_similarity(ours, ref, channel_axis=2)
        rows.append((name, float(grey), float(colour), t_ref, t_ours))
    return rows


def lambda_seconds(runs: list[dict[str, Any]], style: str) -> float:
    """Billed seconds of a warm invocation of ``style``: decode + warm render + encode, rounded up to 1 ms."""
    t = median_of(runs, "decode") + median_of(runs, "warm", style) + median_of(runs, "encode_each", style)
    return math.ceil(t * 1000) / 1000


def lambda_cost(single: dict[str, list[dict[str, Any]]], two_threads: dict[tuple[str, str], float]) -> None:
    """Print the cost of LAMBDA_PHOTOS photos of LAMBDA_MP MP in every style, with the formula's inputs.

    ``single`` holds the one-thread runs per implementation; ``two_threads`` the warm render times of the
    main (two-thread) run at that size per (implementation, style), shown beside them when there.
    """
    gb = LAMBDA_MB / 1024
    requests = LAMBDA_PHOTOS * len(STYLES)
    print(f"\n## Lambda cost: {LAMBDA_PHOTOS:,} photos of {LAMBDA_MP} MP in all four styles\n")
    print(
        "cost = photos x sum over styles of (billed s x memory GB x price per GB-s + price per request)\n\n"
        f"- memory: {LAMBDA_MB} MB = {gb:.4f} GB, which Lambda gives one vCPU, so the times are\n"
        "  measured with cv2.setNumThreads(1) (a fresh process per cell, median of the warm renders)\n"
        f"- price (x86_64): ${LAMBDA_GB_SECOND_USD:.10f} per GB-second, "
        f"${LAMBDA_REQUEST_USD * 1e6:.2f} per million requests\n"
        f"- photos: {LAMBDA_PHOTOS:,}, one invocation per style: {requests:,} requests\n"
        "- billed s = decode + render + JPEG encode of one warm invocation, rounded up to 1 ms;\n"
        "  not counted: the S3 GET/PUT and status writes (their time and their own prices) and the\n"
        "  init phase of cold starts\n"
    )
    for impl, runs in single.items():
        rows = []
        total_s = total_usd = 0.0
        for style in STYLES:
            billed = lambda_seconds(runs, style)
            usd = LAMBDA_PHOTOS * (billed * gb * LAMBDA_GB_SECOND_USD + LAMBDA_REQUEST_USD)
            total_s += billed
            total_usd += usd
            row = [style, f"{median_of(runs, 'warm', style):.3f}"]
            two = two_threads.get((impl, style))
            row.append("-" if two is None else f"{two:.3f}")
            row += [f"{billed:.3f}", f"{billed * gb:.4f}", f"{usd:.4f}"]
            rows.append(row)
        rows.append(["all four", "", "", f"{total_s:.3f}", f"{total_s * gb:.4f}", f"{total_usd:.4f}"])
        print(
            f"{impl} (decode {median_of(runs, 'decode'):.3f} s at 1 thread; "
            f"init, not counted: {median_of(runs, 'import'):.2f} s of imports per cold start)\n"
        )
        headers = [
            "style",
            "render s, 1 thread",
            "render s, 2 threads",
            "billed s",
            "GB-s",
            f"USD per {LAMBDA_PHOTOS:,} photos",
        ]
        print(table(headers, rows))
        print(
            f"\n{impl}: ${total_usd:.4f} per {LAMBDA_PHOTOS:,} photos, "
            f"of which requests ${requests * LAMBDA_REQUEST_USD:.4f} "
            f"(${total_usd / LAMBDA_PHOTOS * 1e6:.0f} per million photos)\n"
        )


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 and 6 MP only, one process per cell")
    ap.add_argument("--sizes", type=int, nargs="*", help="megapixel sizes (of 1, 6, 12, 24)")
    ap.add_argument("--repeats", type=int, help="fresh processes per cell (default 3, quick 1)")
    ap.add_argument("--no-ref", action="store_true", help="skip the reference pipeline")
    ap.add_argument("--no-ssim", action="store_true", help="skip the full-size SSIM check")
    ap.add_argument("--no-lambda", action="store_true", help="skip the one-thread cells and the Lambda cost")
    ap.add_argument("--setup-ref", action="store_true", help="only create bench/.venv-ref")
    args = ap.parse_args(argv)
    import atelier  # noqa: F401  (before cv2, as in worker())

    if args.setup_ref:
        print(ensure_ref_venv())
        return 0
    sizes = args.sizes or ([1, 6] if args.quick else [1, 6, 12, 24])
    repeats = args.repeats or (1 if args.quick else 3)
    impls = [("atelier", sys.executable)]
    if not args.no_ref:
        impls.append(("reference", str(ensure_ref_venv())))
    photos = {mp: make_photo(mp) for mp in sizes}
    print(
        f"# Styles benchmark: {THREADS} threads, {repeats} fresh process(es) per cell, CPUs: {os.cpu_count()}"
    )
    for mp, p in photos.items():
        print(f"#   {mp:>2} MP photo: {p.relative_to(HERE.parent)} ({SIZES[mp][0]}x{SIZES[mp][1]})")
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for mp in sizes:
        for impl, py in impls:
            for style in (*STYLES, "all"):
                warm = WARM_REPEATS if style == "all" else 0
                key = (impl, style, mp)
                results[key] = [run_cell(py, impl, style, photos[mp], warm) for _ in range(repeats)]
                print(f"  done {impl:9s} {style:10s} {mp:>2} MP", file=sys.stderr, flush=True)
    single: dict[str, list[dict[str, Any]]] = {}
    if not args.no_lambda:
        photo = photos.get(LAMBDA_MP) or make_photo(LAMBDA_MP)
        for impl, py in impls:
            single[impl] = [run_cell(py, impl, "all", photo, WARM_REPEATS, 1) for _ in range(repeats)]
            print(f"  done {impl:9s} all, 1 thread {LAMBDA_MP:>2} MP", file=sys.stderr, flush=True)

    print("\n## Per style: fresh process, decode + render + JPEG encode (median)\n")
    headers = ["MP", "style", "render s", "pipeline s", "peak RSS MiB"]
    if not args.no_ref:
        headers += ["ref render s", "ref pipeline s", "ref peak MiB", "time ratio", "RSS ratio"]
    rows = []
    for mp in sizes:
        for style in STYLES:
            a = results[("atelier", style, mp)]
            row = [str(mp), style, f"{median_of(a, 'cold', style):.3f}", f"{median_of(a, 'pipeline'):.3f}"]
            row.append(f"{median_of(a, 'peak_mb'):.0f}")
            if not args.no_ref:
                r = results[("reference", style, mp)]
                row += [f"{median_of(r, 'cold', style):.3f}", f"{median_of(r, 'pipeline'):.3f}"]
                row.append(f"{median_of(r, 'peak_mb'):.0f}")
                row.append(f"{median_of(r, 'pipeline') / median_of(a, 'pipeline'):.1f}x")
                row.append(f"{median_of(r, 'peak_mb') / median_of(a, 'peak_mb'):.1f}x")
            rows.append(row)
    print(table(headers, rows))

    print(f"\n## All four styles on one decoded array (warm, median of {WARM_REPEATS} x {repeats})\n")
    headers = ["MP", *STYLES, "total s"]
    if not args.no_ref:
        headers += ["ref total s", "speed-up"]
    rows = []
    for mp in sizes:
        a = results[("atelier", "all", mp)]
        row = [
            str(mp),
            *(f"{median_of(a, 'warm', s):.3f}" for s in STYLES),
            f"{median_of(a, 'warm_total'):.3f}",
        ]
        if not args.no_ref:
            r = results[("reference", "all", mp)]
            row += [
                f"{median_of(r, 'warm_total'):.3f}",
                f"{median_of(r, 'warm_total') / median_of(a, 'warm_total'):.1f}x",
            ]
        rows.append(row)
    print(table(headers, rows))

    if len(sizes) > 1:
        print("\n## Growth with pixels (exponent b in cost ~ MP^b, fitted over the sizes run)\n")
        print(
            "b = 1: cost in proportion to pixels (ms per MP constant); b < 1: part of it is fixed, or\n"
            "the work is done on a capped copy; b > 1: faster than linear. 'cold' is the first render in\n"
            "a fresh process (one-off set-up included), 'warm' the median of later renders of one array.\n"
        )
        rows = []
        mps = [float(m) for m in sizes]
        for impl, _ in impls:
            for style in STYLES:
                times = [median_of(results[(impl, style, m)], "cold", style) for m in sizes]
                warm_t = [median_of(results[(impl, "all", m)], "warm", style) for m in sizes]
                rss = [median_of(results[(impl, style, m)], "peak_mb") for m in sizes]
                per_mp = ", ".join(f"{t / m * 1e3:.0f}" for t, m in zip(times, mps, strict=True))
                warm_mp = ", ".join(f"{t / m * 1e3:.0f}" for t, m in zip(warm_t, mps, strict=True))
                rows.append(
                    [
                        impl,
                        style,
                        f"{slope(mps, times):.2f}",
                        f"{slope(mps, warm_t):.2f}",
                        f"{slope(mps, rss):.2f}",
                        per_mp,
                        warm_mp,
                    ]
                )
        headers = [
            "impl",
            "style",
            "cold time b",
            "warm time b",
            "peak RSS b",
            "cold ms per MP",
            "warm ms per MP",
        ]
        print(table(headers, rows))

    if single:
        two: dict[tuple[str, str], float] = {}
        if LAMBDA_MP in sizes:
            two = {
                (impl, s): median_of(results[(impl, "all", LAMBDA_MP)], "warm", s)
                for impl in single
                for s in STYLES
            }
        lambda_cost(single, two)

    if not args.no_ssim and 6 in photos:
        print("\n## Full-size fidelity at 6 MP (SSIM, skimage structural_similarity)\n")
        rows = [
            [n, f"{g:.4f}", f"{c:.4f}", f"{tr:.2f}", f"{to:.3f}"] for n, g, c, tr, to in fidelity(photos[6])
        ]
        print(
            table(
                ["style vs OpenCV", "SSIM grey", "SSIM colour (channel_axis=2)", "OpenCV s", "Atelier s"],
                rows,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
