"""The GPU worker's job: an upscale render per queue message, idempotent, with models loaded once."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atelier.adapters.aws.s3 import object_of
from atelier.adapters.aws.sqs import SqsJobQueue
from atelier.config import AppConfig, WorkerSettings
from atelier.domain import keys, options, status
from atelier.domain.errors import JobFailed
from atelier.entrypoints import wiring
from atelier.pipeline import StyleJob, render_object
from atelier.ports import NotFound
from atelier.worker import Worker

log = logging.getLogger("atelier.worker")

SCALES = (2, 3, 4)
DEFAULT_SCALE = 4
_SCALE_SEGMENT = re.compile(r"^x([234])$")
# A job still rendering this long after it started is reported timed out (its worker died): far above
# any render's time on a GPU (bench/edsr.py), and the lease of a dead worker's message is long over.
JOB_SECONDS = 900


def scale_of(key: str, metadata: dict[str, str]) -> int:
    """The upload's scale: metadata ``scale`` or the upload API's option, a ``x2|x3|x4`` folder, else 4."""
    meta = {k.lower(): v for k, v in metadata.items()}
    wanted = meta.get("scale", "").lower().lstrip("x")
    if not wanted:  # x-amz-meta-options: {"upscale": {"factor": 2}}
        wanted = str(options.option_of(metadata, keys.UPSCALE, "factor") or "")
    if wanted.isdigit() and int(wanted) in SCALES:
        return int(wanted)
    parts = key.split("/")
    if len(parts) > 3 and parts[1] == keys.UPSCALE and (m := _SCALE_SEGMENT.match(parts[2])):
        return int(m.group(1))
    return DEFAULT_SCALE


class UpscaleModels:
    """One Upscaler per scale, built on first use and kept for the life of the process."""

    def __init__(self, model_path: Callable[[int], Path], **upscaler_options: Any) -> None:
        self.model_path = model_path
        self.options = upscaler_options
        self._loaded: dict[int, Any] = {}

    def get(self, scale: int) -> Any:
        """The Upscaler for ``scale``."""
        if scale not in self._loaded:
            from atelier.inference.upscale import Upscaler

            path = self.model_path(scale)
            if not path.is_file():
                raise JobFailed(
                    "model_unavailable",
                    f"the x{scale} upscale model is not installed in this worker ({path}); ask for another "
                    "factor, or deploy a worker image with it (infra/gpu-worker/models/README.md)",
                )
            started = time.perf_counter()
            self._loaded[scale] = Upscaler(path, **self.options)
            log.info("loaded %s in %.1f s", path, time.perf_counter() - started)
        return self._loaded[scale]


def build_job(app: wiring.Adapters, models: UpscaleModels, tile: int | None = None) -> Callable[..., Any]:
    """The function the worker runs per message (an S3 "Object Created" event from EventBridge).

    SQS leases already keep one message on one worker; a duplicate message for a job that has ended is
    skipped by the status claim (see :meth:`atelier.domain.status.Board.rendering`). Two duplicates leased at
    the same moment may both render: the same bytes land on the same key, which is harmless.
    """

    def run(event: dict[str, Any]) -> dict[str, Any]:
        key, etag = object_of(event)
        try:
            head = app.store.head(key)
        except NotFound:
            return {"state": "skipped", "source_key": key, "message": "the object was deleted"}
        scale = scale_of(key, dict(head.metadata))
        upscaler = models.get(scale)
        job = StyleJob(
            name=keys.UPSCALE,  # the status item's style: what the upload asked for; the factor is a field
            fingerprint=f"edsr-x{scale}:{models.model_path(scale).name}",
            render=lambda bgr: upscaler.upscale(bgr, tile=tile),
            output_name=f"{keys.UPSCALE}-x{scale}",  # renders/<image-id>/upscale-x<factor>.png
            output_format="png",
            status_fields={"factor": scale},
        )
        deadline_at = int(time.time()) + JOB_SECONDS
        outcome = render_object(
            app.store, app.board, key, etag, job, app.config.limits, deadline_at, head=head
        )
        return outcome.as_dict()

    return run


def failure_marker(app: wiring.Adapters) -> Callable[[str, str, str], None]:
    """What the worker calls for a job it gives up on: the upscale's status item says ``failed``."""

    def mark(body: str, reason: str, message: str) -> None:
        key, etag = object_of(json.loads(body))
        try:
            metadata = app.store.head(key).metadata
        except NotFound:
            metadata = {}
        upload = keys.describe(key, etag, metadata)
        app.board.fail(
            upload.image_id, keys.UPSCALE, reason, message, status.job_fields(upload, etag, metadata)
        )

    return mark


def main(queue_url: str | None = None, *, until_idle: bool = False, tile: int | None = None) -> int:
    """The worker's composition root: consume the upscale queue until SIGTERM (or until it is idle)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = WorkerSettings.from_env(queue_url=queue_url)
    app = wiring.build(AppConfig.from_env(idempotency=False))
    models = UpscaleModels(settings.model_path, provider=settings.provider)
    queue = SqsJobQueue(app.sqs, settings.queue_url, wait_seconds=settings.wait_seconds)
    redrive = queue.redrive()
    worker = Worker(
        queue,
        build_job(app, models, tile),
        max_receives=redrive[1] if redrive else None,
        on_failure=failure_marker(app),
        visibility=settings.visibility,
        heartbeat=settings.heartbeat,
        retry_delay=settings.retry_delay,
        grace=settings.grace,
    )
    worker.install_signal_handlers()
    stats = worker.run(until_idle=until_idle)
    log.info("worker stopped: %d done, %d released, %d failed", stats.done, stats.released, stats.failed)
    return 0


def cli(argv: list[str] | None = None) -> int:
    """``python -m atelier.entrypoints.gpu_worker``: the container task's command line."""
    parser = argparse.ArgumentParser(description="consume the upscale queue until SIGTERM")
    parser.add_argument("--queue-url", default=None, help="default: $ATELIER_UPSCALE_QUEUE_URL")
    parser.add_argument("--until-idle", action="store_true", help="exit when the queue has nothing left")
    parser.add_argument("--tile", type=int, default=None, help="tile size in input pixels; 0 = whole image")
    args = parser.parse_args(argv)
    return main(args.queue_url, until_idle=args.until_idle, tile=args.tile)


if __name__ == "__main__":
    sys.exit(cli())
