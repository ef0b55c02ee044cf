"""The ``atelier`` command: stylize and inspect photos locally; run and drive the local stack."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from atelier.config import read_limits
from atelier.domain import options
from atelier.domain.errors import ImageRejected
from atelier.domain.limits import Limits
from atelier.imaging import styles
from atelier.imaging.decode import decode
from atelier.imaging.encode import encode
from atelier.imaging.probe import EXTENSIONS, FORMATS, ImageInfo, probe_reader
from atelier_dev import gallery

console = Console()
err_console = Console(stderr=True)


def _read_head(path: Path, limits: Limits) -> ImageInfo:
    """Probe a file reading only as much of it as the header needs."""
    size = path.stat().st_size
    with path.open("rb") as fh:

        def read(n: int) -> bytes:
            fh.seek(0)
            return fh.read(n)

        return probe_reader(read, size, limits)


ANIME = "anime"


def parse_styles(spec: str) -> list[str]:
    """``all`` (the CPU styles) or a comma-separated list of style names, ``anime`` included."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names or names == ["all"]:
        return list(styles.CPU_STYLES)
    for name in names:
        if name != ANIME:
            styles.get(name)
    return names


def anime_renderer(model: str | None) -> tuple[Callable[[Any], Any], str]:
    """The anime model's stylize function and the note to show beside its output."""
    from atelier.inference import models
    from atelier.inference.anime import load_model

    name = model or "face_paint_512_v2"
    if model is None and not models.installed_path(name).exists():
        name = "animeganv2-dev"  # nothing fetched: the untrained dev build, labelled as such
    path = Path(name) if name.endswith(".onnx") else models.installed_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: run `atelier models fetch {name}` (or build-dev)")
    notice = "" if name.endswith(".onnx") else models.untrained_notice(models.read_info(name))
    return load_model(path).stylize, notice


def parse_strength(text: str) -> float:
    """``--strength``: a number from 0 to 1, or argparse's usage error saying so."""
    try:
        return options.STRENGTH.parse("--strength", text)
    except options.InvalidOption as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def style_renderer(name: str, strength: float | None) -> Callable[[Any], Any]:
    """A CPU style's render at ``strength`` (its tuned default when None)."""
    style = styles.get(name)
    if strength is None:
        return style.render
    style.params({"strength": strength})  # a ValueError now rather than on the first photo
    return functools.partial(style.render, strength=strength)


@dataclass
class Row:
    """One line of the summary table."""

    file: str
    style: str
    size: str
    ms: float
    output: str = ""
    error: str = ""


def cmd_stylize(args: argparse.Namespace) -> int:
    """Render each photo in each style into OUTDIR."""
    limits = read_limits()
    try:
        names = parse_styles(args.style)
    except ValueError as exc:
        err_console.print(f"[red]{exc}[/red]")
        return 2
    try:
        renderers = {n: style_renderer(n, args.strength) for n in names if n != ANIME}
    except ValueError as exc:
        err_console.print(f"[red]{exc}[/red]")
        return 2
    notes: dict[str, str] = {}
    if ANIME in names:
        if args.strength is not None:
            err_console.print("note: --strength applies to the CPU styles; anime ignores it")
        try:
            renderers[ANIME], notes[ANIME] = anime_renderer(args.model)
        except FileNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            return 2
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    entries: list[gallery.Entry] = []
    rejected = 0
    paths = [Path(p) for p in args.photos]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal and not args.progress,
    ) as progress:
        task = progress.add_task("stylizing", total=len(paths) * len(names))
        for path in paths:
            entry = gallery.Entry(path.name)
            entries.append(entry)
            try:
                info = _read_head(path, limits)
                t0 = time.perf_counter()
                decoded = decode(path.read_bytes(), limits, info)
                decode_ms = (time.perf_counter() - t0) * 1000
            except (ImageRejected, OSError) as exc:
                rejected += 1
                reason = f"{exc.reason}: {exc.message}" if isinstance(exc, ImageRejected) else str(exc)
                rows.append(Row(path.name, "-", "-", 0.0, error=reason))
                entry.tiles.append(gallery.Tile("rejected", note=reason, failed=True))
                progress.advance(task, len(names))
                continue
            fmt = info.format if args.format == "same" else args.format
            if args.gallery:
                original = out_dir / "originals" / path.name
                original.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, original)
                entry.original = f"originals/{path.name}"
            for name in names:
                progress.update(task, description=f"{path.name} · {name}")
                t0 = time.perf_counter()
                art = renderers[name](decoded.bgr)
                body = encode(art, fmt, alpha=decoded.alpha)
                ms = (time.perf_counter() - t0) * 1000 + decode_ms / len(names)
                target = out_dir / f"{path.stem}.{name}.{EXTENSIONS[fmt]}"
                target.write_bytes(body)
                size = f"{art.shape[1]}x{art.shape[0]}"
                note = f" ({notes[name]})" if notes.get(name) else ""
                rows.append(Row(path.name, name, size, ms, str(target) + note))
                entry.tiles.append(gallery.Tile(name, target.name, f"{size} · {ms:.0f} ms{note}"))
                progress.advance(task)
    table = Table(title="atelier stylize")
    for col in ("file", "style", "size", "ms", "result"):
        table.add_column(col, justify="right" if col == "ms" else "left")
    for r in rows:
        result = f"[red]rejected: {r.error}[/red]" if r.error else r.output
        table.add_row(r.file, r.style, r.size, f"{r.ms:.0f}" if not r.error else "-", result)
    console.print(table)
    if args.gallery:
        index = gallery.write(out_dir, entries, "Atelier · stylize")
        console.print(f"gallery: {index}")
    if rejected:
        err_console.print(f"[red]{rejected} of {len(paths)} file(s) rejected[/red]")
        return 1
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print format, header size and verdict per file; a rejected file is never decoded."""
    limits = read_limits()
    from atelier.imaging import phash
    from atelier.imaging.preview import preview

    table = Table(title="atelier inspect")
    for col in ("file", "format", "width", "height", "verdict", "phash"):
        table.add_column(col)
    worst = 0
    for name in args.photos:
        path = Path(name)
        try:
            info = _read_head(path, limits)
        except ImageRejected as exc:
            table.add_row(path.name, "-", "-", "-", f"[red]{exc.reason}[/red]: {exc.message}", "")
            worst = 1
            continue
        except OSError as exc:
            table.add_row(path.name, "-", "-", "-", f"[red]unreadable[/red]: {exc.strerror}", "")
            worst = 1
            continue
        w, h = info.display_size
        try:  # the header passed; the hash needs the pixels, a reduced decode of them
            small, info = preview(path.read_bytes(), limits, info)
            digest = phash.to_hex(phash.phash(small))
        except ImageRejected as exc:
            table.add_row(
                path.name, info.format, str(w), str(h), f"[red]{exc.reason}[/red]: {exc.message}", ""
            )
            worst = 1
            continue
        w, h = info.display_size
        table.add_row(path.name, info.format, str(w), str(h), "[green]accepted[/green]", digest)
    console.print(table)
    return worst


def cmd_examples(args: argparse.Namespace) -> int:
    """Write the web page's style examples (commit them; a test says when a style changed since)."""
    for path in gallery.write_examples(Path(args.photo), Path(args.out)):
        console.print(f"{path} ({path.stat().st_size} bytes)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="atelier", description="Photos into art, locally or on AWS Lambda.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stylize", help="render photos in the CPU styles into a folder")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument(
        "--style", "-s", default="all", help="comma-separated styles (anime too), or all (default)"
    )
    p.add_argument("--model", default=None, help="anime model: a manifest name or an .onnx path")
    p.add_argument(
        "--strength",
        type=parse_strength,
        default=None,
        metavar="X",
        help="0..1: how strongly each CPU style transforms the photo (default: each style's own)",
    )
    p.add_argument("--output", "-o", required=True, metavar="OUTDIR")
    p.add_argument("--format", "-f", default="same", choices=("same", *FORMATS), help="output format")
    p.add_argument("--gallery", action="store_true", help="also write OUTDIR/index.html")
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("inspect", help="format, size and verdict of each photo, from its header alone")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("demo", help="the main job on the local stack: upload, render every style, gallery")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--out", default="out", help="folder for the renders and index.html (default: out)")
    p.add_argument("--dir", default=None, help="keep the stack's data here instead of a temporary folder")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument(
        "--serve",
        choices=("auto", "yes", "no"),
        default="auto",
        help="keep the web gallery up until Ctrl-C afterwards (auto: when run from a terminal)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("examples", help="the web page's example of each style, into web/examples/")
    p.add_argument("--photo", default="samples/chelsea.jpg")
    p.add_argument("--out", default="web/examples")
    p.set_defaults(func=cmd_examples)

    sub.add_parser("worker", help="consume the upscale queue: the GPU container task's entry point (--help)")

    p = sub.add_parser("upscale", help="super-resolve one photo with EDSR, tiled (GPU where present)")
    p.add_argument("photo", metavar="PHOTO")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    p.add_argument(
        "--model", default=None, help="a manifest name or an .onnx path (default: edsr_baseline_x<scale>)"
    )
    p.add_argument("--tile", type=int, default=None, help="tile size in input pixels; 0 = whole image")
    p.add_argument("--provider", choices=("auto", "cuda", "tensorrt", "cpu"), default="auto")
    p.add_argument("--output", "-o", required=True, metavar="OUT", help="output PNG")
    p.set_defaults(func=cmd_upscale)

    from atelier_dev.local.cli import add_parser as add_local
    from atelier_dev.models.cli import add_parser as add_models

    add_models(sub)

    add_local(sub)
    return parser


def cmd_upscale(args: argparse.Namespace) -> int:
    """Upscale one file through the same tiled path as the worker."""
    from atelier.inference import models
    from atelier.inference.upscale import Upscaler

    name = args.model or f"edsr_baseline_x{args.scale}"
    if args.model is None and not models.installed_path(name).exists():
        name += "-dev"  # no trained model fetched: the untrained dev build, said so below
    path = Path(name) if name.endswith(".onnx") else models.installed_path(name)
    if not path.exists():
        hint = "atelier models build-dev" if args.model is None else f"atelier models fetch {name}"
        err_console.print(f"[red]no model at {path}[/red]: run `{hint}` first")
        return 2
    limits = read_limits()
    try:
        decoded = decode(Path(args.photo).read_bytes(), limits)
    except ImageRejected as exc:
        err_console.print(f"[red]{args.photo}: {exc.reason}[/red]: {exc.message}")
        return 1
    upscaler = Upscaler(path, provider=args.provider)
    if upscaler.scale != args.scale:
        err_console.print(f"[red]{path} upscales x{upscaler.scale}, not x{args.scale}[/red]")
        return 2
    started = time.perf_counter()
    out = upscaler.upscale(decoded.bgr, tile=args.tile)
    seconds = time.perf_counter() - started
    Path(args.output).write_bytes(encode(out, "png"))
    notice = "" if name.endswith(".onnx") else models.untrained_notice(models.read_info(name))
    console.print(
        f"{args.photo} {decoded.width}x{decoded.height} -> {args.output} {out.shape[1]}x{out.shape[0]}"
        f" in {seconds:.2f} s on {upscaler.providers[0]}" + (f" ({notice})" if notice else "")
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job on the local stack (``make run``)."""
    from atelier_dev import demo

    data_dir = Path(args.dir) if args.dir else None
    serve = args.serve == "yes" or (args.serve == "auto" and sys.stdin.isatty())
    return demo.run([Path(p) for p in args.photos], Path(args.out), data_dir, args.timeout, serve)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``atelier`` console script."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:  # the GPU container task's own command line, options and all
        from atelier.entrypoints import gpu_worker

        return gpu_worker.cli(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
