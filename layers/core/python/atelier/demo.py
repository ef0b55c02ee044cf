"""The main job on the local stack: upload photos to incoming/all/, wait for every render, build a gallery."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from atelier import gallery, keys, styles
from atelier.aws.status import DynamoStatusStore
from atelier.local.api_server import serve_api
from atelier.local.stack import start_stack

TERMINAL = {"done", "rejected", "failed"}


@dataclass
class Uploaded:
    """One photo put into the bucket."""

    path: Path
    key: str
    image_id: str


def run(
    photos: list[Path],
    out_dir: Path,
    data_dir: Path | None = None,
    timeout: float = 300.0,
    serve: bool = False,
) -> int:
    """Start the stack, render each photo in every CPU style, write ``out_dir``, stop; non-zero on failure."""
    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atelier-stack-") as tmp:
        root = data_dir or Path(tmp)
        console.print(f"starting the local stack in {root} ...")
        started = time.perf_counter()
        with start_stack(root) as stack:
            ends = stack.endpoints
            console.print(
                f"S3 (SeaweedFS) {ends['s3']}, DynamoDB and SQS (moto) {ends['dynamodb']}"
                f" — up in {time.perf_counter() - started:.1f} s"
            )
            # the handlers' JSON logs and metrics are for CloudWatch; here the table below says it all
            stack.env.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
            stack.start_dispatcher()
            url, stop_api = serve_api(stack)
            console.print(f"[bold]web gallery and upload API: {url}[/bold]")
            uploads = _upload(stack, photos)
            console.print(f"uploaded {len(uploads)} photo(s) to s3://{stack.bucket}/incoming/all/")
            statuses = _wait(stack, uploads, timeout)
            entries, rows = _collect(stack, uploads, statuses, out_dir)
            _print_table(console, rows)
            if serve:
                console.print(f"[bold]try it: open {url} and drop photos in; Ctrl-C stops everything[/bold]")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            stop_api()
        console.print("local stack stopped")
    index = gallery.write(out_dir, entries, "Atelier · make run", "Rendered on the local stack.")
    console.print(f"gallery of this run: {index}")
    bad = [r for r in rows if r[2] not in ("done", "rejected")]
    return 1 if bad else 0


def _print_table(console: Console, rows: list[tuple[str, str, str, str, str]]) -> None:
    table = Table(title="renders")
    for col in ("image", "style", "state", "ms", "output / reason"):
        table.add_column(col, justify="right" if col == "ms" else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _upload(stack: Any, photos: list[Path]) -> list[Uploaded]:
    uploads = []
    for path in photos:
        key = f"{keys.INCOMING}{keys.ALL}/{path.name}"
        etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=path.read_bytes())["ETag"].strip('"')
        uploads.append(Uploaded(path, key, keys.drop_in_image_id(key, etag)))
    return uploads


def _wait(stack: Any, uploads: list[Uploaded], timeout: float) -> dict[str, dict[str, dict[str, Any]]]:
    status = DynamoStatusStore(stack.dynamodb, stack.env["ATELIER_STATUS_TABLE"])
    wanted = set(styles.CPU_STYLES)
    deadline = time.monotonic() + timeout
    while True:
        seen = {u.image_id: {i["style"]: i for i in status.get_status(u.image_id)} for u in uploads}
        finished = all(
            wanted <= set(items) and all(items[s]["state"] in TERMINAL for s in wanted)
            for items in seen.values()
        )
        if finished or time.monotonic() > deadline:
            stack.dispatcher.wait_idle(timeout=10)
            return seen
        time.sleep(0.25)


def _collect(
    stack: Any, uploads: list[Uploaded], statuses: dict[str, dict[str, dict[str, Any]]], out_dir: Path
) -> tuple[list[gallery.Entry], list[tuple[str, str, str, str, str]]]:
    entries: list[gallery.Entry] = []
    rows: list[tuple[str, str, str, str, str]] = []
    originals = out_dir / "originals"
    originals.mkdir(exist_ok=True)
    for up in uploads:
        shutil.copyfile(up.path, originals / up.path.name)
        entry = gallery.Entry(f"{up.path.name} ({up.image_id})", f"originals/{up.path.name}")
        entries.append(entry)
        items = statuses.get(up.image_id, {})
        for style in styles.CPU_STYLES:
            item = items.get(style, {"state": "missing", "message": "no status item"})
            state = str(item.get("state"))
            ms = f"{item['timings_ms']['total']:.0f}" if "timings_ms" in item else "-"
            if state == "done":
                target = out_dir / up.image_id / Path(item["output_key"]).name
                target.parent.mkdir(exist_ok=True)
                body = stack.s3.get_object(Bucket=stack.bucket, Key=item["output_key"])["Body"].read()
                target.write_bytes(body)
                rel = f"{up.image_id}/{target.name}"
                note = f"{item.get('width')}x{item.get('height')} · {ms} ms"
                entry.tiles.append(gallery.Tile(style, rel, note))
                rows.append((up.path.name, style, state, ms, rel))
            else:
                why = f"{item.get('reason', '')} {item.get('message', '')}".strip()
                entry.tiles.append(gallery.Tile(style, note=f"{state}: {why}", failed=True))
                rows.append((up.path.name, style, state, ms, why))
    return entries, rows
