"""Contact sheets to judge the four styles by eye: original | Atelier | OpenCV reference | G'MIC.

Writes into out/look/:

- ``<style>.png``: one row per corpus photo (portraits, sky, architecture, night, bright, texture),
  each cell about 600 px wide, every image rendered at that size;
- ``<style>_100pct.png``: 600x400 crops at 100 % (a face, a sky, an edge, grain) cut from 12 MP renders of
  phone-sized photos with sensor grain (``tests.corpus.phone_sized`` + ``sensor_grain``);
- ``strength.png``: strength 0.0 / default / 1.0 side by side, for the styles that have a ``strength``.

The OpenCV reference is bench/npr.py's ``_reference_render`` (dodge-divide sketch, ``cv2.pencilSketch``,
``cv2.xphoto.oilPainting(7, 1)``, ``cv2.stylization``; 1920 px cap, pencil and oil at half of that) run
in bench/.venv-ref, whose opencv-contrib has xphoto; its output is enlarged back to the input's size.
G'MIC (Debian's ``gmic``) is for comparison only: its nearest filter per style, parameters scaled with
the image's size, run on the PNG of the photo (for the 12 MP crops, on the crop plus a margin).

    .venv/bin/python bench/look.py                 # all sheets (about 3 minutes on 2 busy cores)
    .venv/bin/python bench/look.py --styles oil    # one style
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atelier.imaging import styles  # before cv2: it sets OpenCV's decode limits, read when cv2 loads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # ``from tests import corpus``
sys.path.insert(0, str(HERE))  # ``import npr``

import cv2  # noqa: E402
import npr  # noqa: E402
import numpy as np  # noqa: E402

from tests import corpus  # noqa: E402

OUT = ROOT / "out" / "look"
CELL_W = 600
CROP = (600, 400)  # width, height of a 100 % crop
MARGIN = 96  # pixels of context around a crop for G'MIC's neighbourhood filters
GAP = 6
STRIP = 30  # label strip above each cell
COLUMNS = ("original", "Atelier", "OpenCV reference", "G'MIC")
GMIC = shutil.which("gmic") or "/usr/bin/gmic"
GMIC_TIMEOUT = 90

# the overview's rows: portraits, sky, architecture, fur, texture, night, over-exposed
OVERVIEW = ("astronaut", "camera", "rocket", "china", "chelsea", "brick", "night", "night_street", "bright")
# (photo, what the crop shows, centre x, centre y in the 4000x3000 phone frame)
CROPS = (
    ("astronaut", "face", 1760, 380),
    ("rocket", "sky and rocket edge", 2000, 1100),
    ("china", "roof edge against sky", 1900, 750),
    ("night", "face in the dark", 1760, 380),
    ("brick", "texture", 2000, 1500),
)
STRENGTH_PHOTOS = ("astronaut", "china")
SPENT = {"Atelier": 0.0, "OpenCV reference": 0.0, "G'MIC": 0.0}  # wall seconds per column


# ---------------------------------------------------------------- G'MIC


@dataclass(frozen=True)
class GmicFilter:
    """A G'MIC command whose spatial parameters grow with the image's linear size (1.0 at 0.5 MP)."""

    name: str
    args: Callable[[float], str]

    def command(self, scale: float) -> str:
        return f"{self.name} {self.args(scale)}"


GMIC_FILTERS: dict[str, GmicFilter] = {
    # B&W pencil: size (blur sigma), amplitude
    "sketch": GmicFilter("pencilbw", lambda s: f"{0.3 * s:.2f},60"),
    # coloured line drawing (G'MIC 2.9 has no colour-pencil filter)
    "pencil": GmicFilter("drawing", lambda s: "200"),
    # Kuwahara: flat patches with kept edges, the classic oil-paint filter
    "oil": GmicFilter("kuwahara", lambda s: f"{max(2, round(6 * s))}"),
    # anisotropic smoothing along edges (coarse steps: 2 px, 45 degrees): flat washes; G'MIC 2.9 has no
    # watercolour filter
    "watercolor": GmicFilter("smooth", lambda s: f"{300 * s:.0f},0,1,1.5,6,2,45"),
}


def gmic_scale(pixels: int) -> float:
    """Linear size relative to 0.5 MP, the size the filters' parameters were chosen at."""
    return math.sqrt(pixels / 0.5e6)


def run_gmic(bgr: np.ndarray, style: str, scale: float, work: Path) -> tuple[np.ndarray | None, str]:
    """G'MIC's nearest filter on ``bgr`` (via PNG files); (None, reason) when it fails."""
    flt = GMIC_FILTERS[style]
    cmd = flt.command(scale)
    src, dst = work / f"gmic_in_{style}.png", work / f"gmic_out_{style}.png"
    cv2.imwrite(str(src), bgr)
    dst.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            [GMIC, "-v", "-1", str(src), *cmd.split(" ", 1), "-o", str(dst)],
            capture_output=True,
            text=True,
            timeout=GMIC_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"G'MIC {flt.name} failed: {type(exc).__name__}"
    finally:
        SPENT["G'MIC"] += time.perf_counter() - t0
    out = cv2.imread(str(dst), cv2.IMREAD_COLOR) if res.returncode == 0 else None
    if out is None or out.shape[:2] != bgr.shape[:2]:
        return None, f"G'MIC {flt.name} failed (rc {res.returncode})"
    return out, f"G'MIC {cmd}"


# ---------------------------------------------------------------- OpenCV reference (bench/.venv-ref)

_REF_CODE = """
import json, sys
import cv2, npr
cv2.setNumThreads(2)
images = {}
for src, style, dst in json.load(open(sys.argv[1])):
    if src not in images:
        images[src] = cv2.imread(src, cv2.IMREAD_COLOR)
    cv2.imwrite(dst, npr._reference_render(cv2, images[src], style), [cv2.IMWRITE_PNG_COMPRESSION, 1])
"""


def run_reference(
    photos: dict[str, np.ndarray],
    names: list[str],
    work: Path,
    cut: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> dict[tuple[str, str], np.ndarray | None]:
    """The reference pipeline on every (photo, style), in one process of the reference virtualenv.

    Its output (at most 1920 px on the long side) is enlarged back to the photo's size, then passed
    through ``cut(photo name, image)`` when given (to keep only a crop).
    """
    python = npr.ensure_ref_venv()
    jobs = []
    for i, (key, bgr) in enumerate(photos.items()):
        src = work / f"ref_in_{i}.png"
        cv2.imwrite(str(src), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        jobs += [(key, style, str(src), str(work / f"ref_out_{i}_{style}.png")) for style in names]
    listing = work / "ref_jobs.json"
    listing.write_text(json.dumps([(src, style, dst) for _, style, src, dst in jobs]))
    env = dict(os.environ, PYTHONPATH=str(HERE))
    t0 = time.perf_counter()
    res = subprocess.run(
        [str(python), "-c", _REF_CODE, str(listing)], capture_output=True, text=True, env=env, check=False
    )
    SPENT["OpenCV reference"] += time.perf_counter() - t0
    if res.returncode != 0:
        print(f"reference failed:\n{res.stderr[-1500:]}", file=sys.stderr)
    out: dict[tuple[str, str], np.ndarray | None] = {}
    for key, style, _, dst in jobs:
        img = cv2.imread(dst, cv2.IMREAD_COLOR)
        h, w = photos[key].shape[:2]
        if img is not None and img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        out[(key, style)] = img if img is None or cut is None else cut(key, img)
    return out


# ---------------------------------------------------------------- sheet layout


def grey_cell(w: int, h: int, text: str) -> np.ndarray:
    cell = np.full((h, w, 3), 128, np.uint8)
    cv2.putText(cell, text, (12, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def labelled(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` under a light strip carrying ``text`` (shortened to fit the width)."""
    w = img.shape[1]
    strip = np.full((STRIP, w, 3), 235, np.uint8)
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.55
    while len(text) > 4 and cv2.getTextSize(text, font, size, 1)[0][0] > w - 12:
        text = text[:-3] + ".."
    cv2.putText(strip, text, (6, STRIP - 10), font, size, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([strip, img])


def sheet_row(cells: list[tuple[np.ndarray | None, str]], w: int, h: int) -> np.ndarray:
    parts = []
    for img, text in cells:
        if img is None:
            img = grey_cell(w, h, "no image")
        elif img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        parts.append(labelled(img, text))
        parts.append(np.full((h + STRIP, GAP, 3), 255, np.uint8))
    return np.hstack(parts[:-1])


def stack_rows(title: str, rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    head = np.full((44, width, 3), 255, np.uint8)
    cv2.putText(head, title, (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    out = [head]
    for r in rows:
        if r.shape[1] < width:
            r = np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)])
        out += [r, np.full((GAP * 2, width, 3), 255, np.uint8)]
    return np.vstack(out)


# ---------------------------------------------------------------- renders


def atelier_render(bgr: np.ndarray, style: str, **overrides: float) -> tuple[np.ndarray | None, str]:
    st = styles.get(style)
    params = dict(st.defaults)
    params.update(overrides)
    label = "Atelier"
    if "strength" in params:
        label += f" (strength {params['strength']:g})"
    t0 = time.perf_counter()
    try:
        return st.render(bgr, **overrides), label
    except Exception as exc:  # a style being reworked must not stop the sheet
        return None, f"Atelier failed: {type(exc).__name__}"
    finally:
        SPENT["Atelier"] += time.perf_counter() - t0


def at_width(bgr: np.ndarray, width: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    size = (width, max(1, round(h * width / w)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if width < w else cv2.INTER_CUBIC)


def crop_box(shape: tuple[int, ...], cx: int, cy: int, margin: int = 0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a CROP-sized box centred near (cx, cy), grown by ``margin``, inside the image."""
    h, w = shape[:2]
    cw, ch = CROP
    x0 = min(max(cx - cw // 2, 0), w - cw)
    y0 = min(max(cy - ch // 2, 0), h - ch)
    return max(x0 - margin, 0), max(y0 - margin, 0), min(x0 + cw + margin, w), min(y0 + ch + margin, h)


def overview_sheets(names: list[str], work: Path) -> list[Path]:
    photos = {n: at_width(corpus.photo(n), CELL_W) for n in OVERVIEW}
    refs = run_reference(photos, names, work)
    paths = []
    for style in names:
        rows = []
        for n in OVERVIEW:
            bgr = photos[n]
            h, w = bgr.shape[:2]
            ours, ours_label = atelier_render(bgr, style)
            theirs, gmic_label = run_gmic(bgr, style, gmic_scale(h * w), work)
            cells = [
                (bgr, f"{n} ({corpus.PHOTOS[n][0]}), {w}x{h}"),
                (ours, ours_label),
                (refs[(n, style)], "OpenCV reference"),
                (theirs, gmic_label),
            ]
            rows.append(sheet_row(cells, w, h))
        title = f"{style}: {' | '.join(COLUMNS)}, each rendered at {CELL_W} px wide"
        path = OUT / f"{style}.png"
        cv2.imwrite(str(path), stack_rows(title, rows))
        paths.append(path)
        print(f"  {path.relative_to(ROOT)}", flush=True)
    return paths


def crop_sheets(names: list[str], work: Path) -> list[Path]:
    big = {
        n: corpus.sensor_grain(corpus.phone_sized(corpus.photo(n)), seed=i)
        for i, n in enumerate(dict.fromkeys(c[0] for c in CROPS))
    }
    boxes = {n: crop_box(big[n].shape, cx, cy) for n, _, cx, cy in CROPS}

    def cut(n: str, img: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = boxes[n]
        return np.ascontiguousarray(img[y0:y1, x0:x1])

    refs = run_reference(big, names, work, cut)
    paths = []
    for style in names:
        rows = []
        renders: dict[str, tuple[np.ndarray | None, str]] = {}
        for n, what, cx, cy in CROPS:
            bgr = big[n]
            if n not in renders:
                renders[n] = atelier_render(bgr, style)
            ours, ours_label = renders[n]
            x0, y0, x1, y1 = crop_box(bgr.shape, cx, cy)
            mx0, my0, mx1, my1 = crop_box(bgr.shape, cx, cy, MARGIN)
            region = np.ascontiguousarray(bgr[my0:my1, mx0:mx1])
            theirs, gmic_label = run_gmic(region, style, gmic_scale(bgr.shape[0] * bgr.shape[1]), work)
            if theirs is not None:
                theirs = theirs[y0 - my0 : y1 - my0, x0 - mx0 : x1 - mx0]
            box = (slice(y0, y1), slice(x0, x1))
            cells = [
                (bgr[box], f"{n}: {what}, 100 % of {bgr.shape[1]}x{bgr.shape[0]}"),
                (None if ours is None else ours[box], ours_label),
                (refs[(n, style)], "OpenCV ref (1920 px cap, enlarged)"),
                (theirs, gmic_label),
            ]
            rows.append(sheet_row(cells, *CROP))
        del renders
        title = f"{style}: 100 % crops of 12 MP photos with sensor grain | {' | '.join(COLUMNS)}"
        path = OUT / f"{style}_100pct.png"
        cv2.imwrite(str(path), stack_rows(title, rows))
        paths.append(path)
        print(f"  {path.relative_to(ROOT)}", flush=True)
    return paths


def strength_sheet(names: list[str]) -> Path | None:
    with_strength = [s for s in names if "strength" in styles.get(s).defaults]
    missing = [s for s in names if s not in with_strength]
    if missing:
        print(f"  strength sheet: no 'strength' parameter in {', '.join(missing)}; left out", flush=True)
    if not with_strength:
        return None
    rows = []
    for style in with_strength:
        default = float(styles.get(style).defaults["strength"])
        for n in STRENGTH_PHOTOS:
            bgr = at_width(corpus.photo(n), CELL_W)
            h, w = bgr.shape[:2]
            cells: list[tuple[np.ndarray | None, str]] = [(bgr, f"{style}: {n}")]
            for value in (0.0, default, 1.0):
                img, label = atelier_render(bgr, style, strength=value)
                cells.append((img, label))
            rows.append(sheet_row(cells, w, h))
    path = OUT / "strength.png"
    cv2.imwrite(str(path), stack_rows("strength: original | 0.0 | default | 1.0", rows))
    print(f"  {path.relative_to(ROOT)}", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--styles", nargs="*", choices=list(styles.STYLES), help="default: all four")
    ap.add_argument("--no-crops", action="store_true", help="skip the 12 MP 100 %% crops")
    args = ap.parse_args(argv)
    names = args.styles or list(styles.STYLES)
    if not Path(GMIC).exists():
        print(f"{GMIC} not found: the G'MIC column will be grey (apt-get install gmic)", file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(2)
    t0 = time.perf_counter()
    print(f"writing contact sheets into {OUT.relative_to(ROOT)}/", flush=True)
    with tempfile.TemporaryDirectory(prefix="look-") as tmp:
        work = Path(tmp)
        paths = overview_sheets(names, work)
        if not args.no_crops:
            paths += crop_sheets(names, work)
    strength = strength_sheet(names)
    if strength is not None:
        paths.append(strength)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in SPENT.items())
    print(f"{len(paths)} sheets in {OUT} ({time.perf_counter() - t0:.0f} s; {spent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
