"""The dead-letter path: every failed job ends ``failed`` on its status item and as one record in a queue.

The records have the shape of Lambda's asynchronous-invoke destination records (the event under
``requestPayload``, the error under ``responsePayload``), with the job they failed added under ``job``
(image id, style, reason, message), so a person, an alarm or a redrive reads every failure the same way:

- a permanent failure (a missing model, a bad option): the handler marks the item and sends the record;
- retries exhausted, a timeout on the last attempt, an event too old: Lambda invokes the marker below as
  the style functions' on-failure destination; it marks the item ``failed`` with the last error and
  forwards the record to the queue. The marker's own failures go to the queue unmarked (its on-failure
  destination), so no record is lost;
- the GPU worker's last receive of a job: the worker marks the item and moves the message (see
  :mod:`atelier.entrypoints.gpu_worker`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from atelier.adapters.aws.s3 import object_of
from atelier.config import AppConfig, ConfigError, read_function_prefix
from atelier.domain import keys, status
from atelier.entrypoints import Handler
from atelier.imaging import styles
from atelier.ports import NotFound

STYLES = (*styles.CPU_STYLES, "anime")
# What the marker records for each condition Lambda gives up on.
_REASONS = {"RetriesExhausted": "retries_exhausted", "EventAgeExceeded": "event_expired"}


def failure_record(
    event: Mapping[str, Any],
    context: Any,
    condition: str,
    error_type: str,
    error_message: str,
    attempts: int = 1,
) -> dict[str, Any]:
    """A record like Lambda's on-failure destination record, for a failure a handler decides itself."""
    now = datetime.now(UTC)
    return {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": getattr(context, "aws_request_id", ""),
            "functionArn": getattr(context, "invoked_function_arn", ""),
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": dict(event),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Handled"},
        "responsePayload": {"errorType": error_type, "errorMessage": error_message},
    }


def with_job(
    record: Mapping[str, Any], image_id: str, style: str, reason: str, message: str
) -> dict[str, Any]:
    """``record`` with the job it failed."""
    return {**record, "job": {"image_id": image_id, "style": style, "reason": reason, "message": message}}


def style_of_function(function_arn: str, prefix: str) -> str:
    """The style of a style function from its ARN: functions are named ``<stack>-<style>``."""
    name = function_arn.split(":")[6] if function_arn.count(":") >= 6 else function_arn
    style = name.removeprefix(prefix) if prefix and name.startswith(prefix) else ""
    if style not in STYLES:
        raise ValueError(f"{function_arn!r} is not a style function named {prefix}<style>")
    return style


def reason_of(record: Mapping[str, Any]) -> tuple[str, str]:
    """The status reason and a sentence for a destination record Lambda sent on giving up."""
    context = record.get("requestContext") or {}
    payload = record.get("responsePayload") or {}
    attempts = int(context.get("approximateInvokeCount", 0) or 0)
    error = str(payload.get("errorMessage") or payload.get("errorType") or "unknown error")
    if payload.get("errorType") == "Sandbox.Timedout":
        reason = "timed_out"
    else:
        reason = _REASONS.get(str(context.get("condition", "")), "retries_exhausted")
    return reason, f"{error} (after {attempts} attempt{'s' * (attempts != 1)})"


def deadletter_handler(adapters: Any = None, env: Mapping[str, str] | None = None) -> Handler:
    """Build the marker: the on-failure destination of every style function."""
    from atelier.entrypoints import wiring

    prefix = read_function_prefix(env)
    app = adapters or wiring.build(AppConfig.from_env(env, idempotency=False))
    dead_letters = app.dead_letters
    if dead_letters is None:
        raise ConfigError("set ATELIER_DEAD_LETTER_QUEUE_URL: the marker forwards every record there")
    logger = Logger(service="atelier-deadletter")

    @logger.inject_lambda_context(clear_state=True)
    def handler(record: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        style = style_of_function(str((record.get("requestContext") or {}).get("functionArn", "")), prefix)
        key, etag = object_of(record.get("requestPayload") or {})
        try:
            metadata = app.store.head(key).metadata
        except NotFound:
            metadata = {}  # deleted since: a drop-in's id comes from its key and ETag alone
        upload = keys.describe(key, etag, metadata)
        reason, message = reason_of(record)
        fields = status.job_fields(upload, etag, metadata)
        logger.append_keys(image_id=upload.image_id, style=style, reason=reason)
        current = next((i for i in app.board.items(upload.image_id) if i.get("style") == style), {})
        own = current.get("request_id") == (record.get("requestContext") or {}).get("requestId")
        live = current.get("state") == "rendering" and int(current.get("deadline_at", 0)) > time.time()
        if live and not own:
            # another copy of the event holds the job (this copy found it in progress): it ends it
            logger.info("the job is held by a live invocation; nothing to mark")
            return {"state": "held", "image_id": upload.image_id, "style": style}
        marked = app.board.fail(upload.image_id, style, reason, message, fields)
        if not marked:  # a copy of the event finished it meanwhile: not a failed job
            logger.info("the job had already ended; nothing to mark")
            return {"state": "ended", "image_id": upload.image_id, "style": style}
        dead_letters.send(with_job(record, upload.image_id, style, reason, message))
        logger.warning("job failed", extra={"error": message})
        return {"state": "failed", "image_id": upload.image_id, "style": style, "reason": reason}

    return handler
