"""The main job on the local stack: upload photos to incoming/all/, wait for every render, build a gallery."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys
from atelier.domain.status import TERMINAL
from atelier.imaging import styles
from atelier.worker import Worker
from atelier_dev import gallery
from atelier_dev.local.api_server import serve_api
from atelier_dev.local.stack import start_stack

DEV_MODELS = ("animeganv2-dev", "edsr_baseline_x2-dev")
UNTRAINED = "untrained dev model: shows the code path, not a trained style"


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
        model_dir = dev_models(console)
        with start_stack(root, parameters={"AnimeModel": DEV_MODELS[0]}) as stack:
            stack.env["ATELIER_MODEL_DIR"] = str(model_dir)
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
            extras = _upload_models_demo(stack, photos[0]) if photos else []
            console.print(f"uploaded {len(uploads)} photo(s) to s3://{stack.bucket}/incoming/all/")
            if extras:
                console.print(
                    "and one to incoming/anime/, one (small) to incoming/upscale/x2/ for the worker"
                )
                _run_worker(stack, model_dir)
            statuses = _wait(stack, uploads, timeout)
            entries, rows = _collect(stack, uploads, statuses, out_dir)
            _collect_extras(stack, extras, out_dir, entries, rows)
            _print_table(console, rows)
            if serve:
                worker, thread = serve_worker(stack, model_dir)
                console.print(f"[bold]try it: open {url} and drop photos in; Ctrl-C stops everything[/bold]")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
                worker.request_stop()
                thread.join(timeout=60)
            stop_api()
        console.print("local stack stopped")
    index = gallery.write(out_dir, entries, "Atelier · make run", "Rendered on the local stack.")
    console.print(f"gallery of this run: {index}")
    bad = [r for r in rows if r[2] not in ("done", "rejected")]
    return 1 if bad else 0


def dev_models(console: Console) -> Path:
    """Build the untrained dev models once into the model cache (seconds; no network)."""
    from atelier.inference import models
    from atelier_dev.models.cli import main as models_main

    root = models.cache_dir()
    missing = [name for name in DEV_MODELS if not models.installed_path(name, root=root).exists()]
    if missing:
        console.print(f"building the dev models {', '.join(missing)} into {root} ...")
        models_main(["--cache", str(root), "build-dev", "--only", *missing])
    return root


def _upload_models_demo(stack: Any, photo: Path) -> list[tuple[str, str, str]]:
    """One photo for the anime function and a small one for the upscale worker: (key, image id, style)."""
    import cv2

    from atelier.imaging.decode import decode
    from atelier.imaging.encode import encode

    out = []
    key = f"{keys.INCOMING}anime/{photo.name}"
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=photo.read_bytes())["ETag"].strip('"')
    out.append((key, keys.drop_in_image_id(key, etag), "anime"))
    small = decode(photo.read_bytes()).bgr
    small = cv2.resize(
        small, (160, max(1, 160 * small.shape[0] // small.shape[1])), interpolation=cv2.INTER_AREA
    )
    key = f"{keys.INCOMING}upscale/x2/small-{Path(photo.name).stem}.png"
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=encode(small, "png"))["ETag"].strip('"')
    out.append((key, keys.drop_in_image_id(key, etag), keys.UPSCALE))
    return out


def _upscale_worker(stack: Any, model_dir: Path) -> Worker:
    """The upscale queue's worker on the CPU, as the GPU task runs it."""
    from atelier.adapters.aws.sqs import SqsJobQueue
    from atelier.config import AppConfig
    from atelier.entrypoints import wiring
    from atelier.entrypoints.gpu_worker import UpscaleModels, build_job
    from atelier.inference import models

    with stack.applied_env():
        app = wiring.build(AppConfig.from_env())
        path = lambda scale: models.installed_path(f"edsr_baseline_x{scale}-dev", root=model_dir)  # noqa: E731
        queue = SqsJobQueue(stack.sqs, stack.queue_urls["UpscaleQueue"], wait_seconds=1)
        return Worker(queue, build_job(app, UpscaleModels(path, provider="cpu")))


def _run_worker(stack: Any, model_dir: Path) -> None:
    """Consume the upscale queue until it is empty (the demo's own upscale)."""
    stack.dispatcher.wait_idle(timeout=30)  # the rule has queued the message
    _upscale_worker(stack, model_dir).run(until_idle=True)


def serve_worker(stack: Any, model_dir: Path) -> tuple[Worker, threading.Thread]:
    """The upscale worker in the background for as long as the page is served: an upscale asked for
    from the page renders too."""
    worker = _upscale_worker(stack, model_dir)
    thread = threading.Thread(target=worker.run, name="upscale-worker", daemon=True)
    thread.start()
    return worker, thread


def _collect_extras(
    stack: Any,
    extras: list[tuple[str, str, str]],
    out_dir: Path,
    entries: list[gallery.Entry],
    rows: list[tuple[str, str, str, str, str]],
) -> None:
    status = DynamoStatusStore(stack.dynamodb, stack.env["ATELIER_STATUS_TABLE"])
    for key, image_id, style in extras:
        deadline = time.monotonic() + 120
        item: dict[str, Any] = {}
        while time.monotonic() < deadline:
            item = next((i for i in status.get_status(image_id) if i["style"] == style), {})
            if item.get("state") in TERMINAL:
                break
            time.sleep(0.25)
        state = str(item.get("state", "missing"))
        name = key.rsplit("/", 1)[-1]
        entry = gallery.Entry(f"{name} ({image_id})")
        entries.append(entry)
        ms = f"{item['timings_ms']['total']:.0f}" if "timings_ms" in item else "-"
        if state == "done":
            target = out_dir / image_id / Path(item["output_key"]).name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(
                stack.s3.get_object(Bucket=stack.bucket, Key=item["output_key"])["Body"].read()
            )
            note = f"{item.get('width')}x{item.get('height')} · {ms} ms · {UNTRAINED}"
            entry.tiles.append(gallery.Tile(style, f"{image_id}/{target.name}", note))
            rows.append((name, style, state, ms, f"{image_id}/{target.name} ({UNTRAINED})"))
        else:
            why = f"{item.get('reason', '')} {item.get('message', '')}".strip()
            entry.tiles.append(gallery.Tile(style, note=f"{state}: {why}", failed=True))
            rows.append((name, style, state, ms, why))


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
