"""`atelier models ...`: list, fetch, convert, verify, info and build-dev."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from atelier.inference import models as registry


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Mount `models` with its subcommands on an argparse subparsers object; returns the parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "models", help="list, fetch, convert, verify and build models", description=__doc__
    )
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $ATELIER_MODEL_DIR)")
    sub = parser.add_subparsers(dest="models_command", required=True)

    sub.add_parser("list", help="models of the manifest and what is installed").set_defaults(func=cmd_list)

    p = sub.add_parser("fetch", help="download, check, convert and install a published model")
    p.add_argument("name")
    p.add_argument(
        "--trust-on-first-use", action="store_true", help="accept an unpinned file, record its hash"
    )
    p.add_argument("--url", help="download from this mirror instead of the manifest URL")
    p.add_argument("--s3", dest="s3_uri", help="also upload the ONNX files under s3://bucket/prefix")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("convert", help="convert a local file (.pt or .onnx) of a manifest model to ONNX")
    p.add_argument("name")
    p.add_argument("source", type=Path)
    p.add_argument("--trust-on-first-use", action="store_true", help="convert although no hash is pinned")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="check installed files against their recorded SHA-256 and run them")
    p.add_argument("names", nargs="*", help="default: every installed model")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("info", help="manifest entry and installed record of a model")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("build-dev", help="build the untrained dev models (seeded weights) into the cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", help="names of dev models to build (default: all)")
    p.set_defaults(func=cmd_build_dev)


def main(argv: list[str] | None = None) -> int:
    """Run `atelier models` on its own; returns the exit status."""
    parser = argparse.ArgumentParser(prog="atelier models", description=__doc__)
    _fill(parser)
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Dispatch parsed arguments to their subcommand; errors become a message and status 1."""
    from atelier_dev.models.fetch import FetchError

    try:
        status: int = args.func(args)
    except (FetchError, KeyError, ValueError, NotImplementedError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status


def _root(args: argparse.Namespace) -> Path:
    return Path(args.cache) if args.cache else registry.cache_dir()


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is part of the cli extra
        print("\t".join(headers))
        for row in rows:
            print("\t".join(row))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the manifest with the install state of each model."""
    root = _root(args)
    rows = []
    for e in registry.load_manifest():
        info = registry.read_info(e.name, root)
        state = "-"
        if info is not None:
            state = "installed" + ("" if info.get("trained", True) else " (UNTRAINED)")
        rows.append(
            [
                e.name,
                e.architecture,
                e.layout,
                f"[{e.value_range[0]:g}, {e.value_range[1]:g}]",
                str(e.size_multiple),
                e.sha256_status,
                ",".join(e.precisions),
                state,
            ]
        )
    _print_table(["name", "arch", "layout", "range", "multiple", "sha256", "precisions", "state"], rows)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download and install one model."""
    from atelier_dev.models.fetch import RichProgressBar, fetch

    entry = registry.get(args.name)
    info = fetch(
        entry,
        root=_root(args),
        trust_on_first_use=args.trust_on_first_use,
        url=args.url,
        progress=None if args.no_progress else RichProgressBar(),
        s3_uri=args.s3_uri,
    )
    print(f"installed {entry.name}: source sha256 {info['source_sha256']}")
    if info["source_sha256_trusted_on_first_use"]:
        print("  (trusted on first use: compare this hash with one published by the model's authors)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a local download of a manifest model and install the result."""
    from atelier_dev.models import convert as conv
    from atelier_dev.models.fetch import check_pin

    entry = registry.get(args.name)
    digest = registry.sha256_file(args.source)
    check_pin(digest, entry.sha256, entry.sha256_prefix, str(args.source))
    if not entry.pinned and not args.trust_on_first_use:
        raise ValueError(f"{entry.name}: no SHA-256 is pinned; pass --trust-on-first-use to convert anyway")
    root = _root(args)
    folder = registry.model_dir(entry.name, root)
    outputs = conv.convert(entry, args.source, folder)
    for path in outputs.values():
        conv.run_graph(path, entry.layout)
    info = _record(
        entry,
        outputs,
        trained=entry.trained,
        source_url=str(args.source),
        source_sha256=digest,
        source_sha256_trusted_on_first_use=not entry.pinned,
    )
    registry.write_info(entry.name, info, root)
    print(f"converted {entry.name}: {', '.join(str(p) for p in outputs.values())}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every installed file's SHA-256 and that its graph loads and runs."""
    from atelier_dev.models import convert as conv

    root = _root(args)
    targets = args.names or sorted(p.parent.name for p in root.glob(f"*/{registry.INFO_FILE}"))
    if not targets:
        print("nothing installed")
        return 0
    failed = 0
    for name in targets:
        info = registry.read_info(name, root)
        if info is None:
            print(f"{name}: not installed")
            failed += 1
            continue
        for precision, expected in info["onnx_sha256"].items():
            path = registry.installed_path(name, precision, root)
            problem = ""
            if not path.exists():
                problem = "missing"
            elif registry.sha256_file(path) != expected:
                problem = "SHA-256 differs from the recorded one"
            else:
                try:
                    shape = conv.run_graph(path, info["layout"])
                except Exception as exc:
                    problem = f"does not run: {exc}"
            note = registry.untrained_notice(info)
            if problem:
                failed += 1
                print(f"{name} [{precision}]: FAILED: {problem}")
            else:
                print(f"{name} [{precision}]: ok, output {shape}" + (f" ({note})" if note else ""))
    return 1 if failed else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the manifest entry and the installed record as JSON."""
    entry = registry.get(args.name)
    info = registry.read_info(entry.name, _root(args))
    out: dict[str, Any] = {"manifest": entry.raw, "installed": info}
    notice = registry.untrained_notice(info if info is not None else {"trained": entry.trained})
    if notice:
        out["notice"] = notice
    print(json.dumps(out, indent=2))
    return 0


def cmd_build_dev(args: argparse.Namespace) -> int:
    """Build each dev model of the manifest with seeded weights and install it as untrained."""
    from atelier_dev.models import convert as conv

    root = _root(args)
    built = 0
    for entry in registry.load_manifest():
        if entry.format != "dev" or (args.only and entry.name not in args.only):
            continue
        try:
            model = _build_dev_model(entry, args.seed)
        except NotImplementedError as exc:
            print(f"skipping {entry.name}: {exc}")
            continue
        folder = registry.model_dir(entry.name, root)
        outputs = conv.save_precisions(model, entry.precisions, folder)
        for path in outputs.values():
            conv.run_graph(path, entry.layout)
        info = _record(entry, outputs, trained=False, seed=args.seed, source_url=None)
        registry.write_info(entry.name, info, root)
        digests = ", ".join(f"{p} {d[:12]}" for p, d in info["onnx_sha256"].items())
        print(f"built {entry.name} (UNTRAINED weights, seed {args.seed}): {digests}")
        built += 1
    return 0 if built else 1


def _record(entry: registry.ModelEntry, outputs: dict[str, Path], **extra: Any) -> dict[str, Any]:
    """The installed model's record: what the manifest says, the ONNX files' SHA-256, and ``extra``."""
    return {
        "name": entry.name,
        "architecture": entry.architecture,
        "layout": entry.layout,
        "value_range": list(entry.value_range),
        "size_multiple": entry.size_multiple,
        **extra,
        "onnx_sha256": {p: registry.sha256_file(path) for p, path in outputs.items()},
    }


def _build_dev_model(entry: registry.ModelEntry, seed: int) -> Any:
    from atelier_dev.models import convert as conv

    if entry.architecture == "animeganv2":
        from atelier_dev.models import animegan

        model = animegan.build(seed=seed, layout=entry.layout, size_multiple=entry.size_multiple)
    else:
        model = conv.builder_for(entry)(None, seed)
    return conv.mark_trained(model, False)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
