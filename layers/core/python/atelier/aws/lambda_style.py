"""The Lambda entry point shared by every style function: Powertools around one call into the core."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from atelier import keys, styles
from atelier.aws import wiring
from atelier.pipeline import Outcome, StyleJob, render_object, style_job
from atelier.storage import NotFound, ObjectHead, StoreError

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
JobResolver = Callable[[str, dict[str, str]], StyleJob]


def cpu_resolver(style: styles.Style) -> JobResolver:
    """The job of a CPU style per upload: its renderer at the options the object's metadata asks for."""

    def resolve(key: str, metadata: dict[str, str]) -> StyleJob:
        return style_job(style, metadata)

    return resolve


def style_handler(
    style_name: str,
    adapters: wiring.Adapters | None = None,
    resolver: JobResolver | None = None,
) -> Handler:
    """Build the handler of one style; everything expensive is built here, once per container.

    ``resolver`` picks the job per upload from its key and metadata (the anime model variant, say);
    without it the style's own renderer runs with the options the object's metadata asks for (its
    ``strength``; see :func:`atelier.pipeline.style_job`). The job's fingerprint is in the idempotency key.
    """
    resolve = resolver or cpu_resolver(styles.get(style_name))
    service = f"atelier-{style_name}"
    logger = Logger(service=service)
    tracer = Tracer(service=service)
    metrics = Metrics(namespace="Atelier", service=service)
    app = adapters or wiring.build()
    persistence = DynamoDBPersistenceLayer(table_name=app.config.idempotency_table, boto3_client=app.dynamodb)
    idempotency = IdempotencyConfig(expires_after_seconds=24 * 3600, raise_on_no_idempotency_key=True)
    ttl_seconds = app.config.status_ttl_days * 86400

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=idempotency)
    def render_once(request: dict[str, str], job: StyleJob, head: ObjectHead) -> dict[str, Any]:
        outcome = render_object(
            app.store,
            app.status,
            request["key"],
            request["etag"],
            job,
            app.config.limits,
            styles.CPU_STYLES,
            expires_at=int(time.time()) + ttl_seconds,
            cache=app.cache,
            head=head,
        )
        return outcome.as_dict()

    def render(bucket: str, key: str, etag: str) -> dict[str, Any]:
        # The one HeadObject of the event: its metadata picks the job, and render_object reuses it.
        try:
            head = app.store.head(key)
        except NotFound:
            return {"state": "skipped", "style": style_name, "message": "the object was deleted"}
        job = resolve(key, dict(head.metadata))
        request = {"bucket": bucket, "key": key, "etag": etag, "style": style_name}
        return render_once(request={**request, "style_version": job.fingerprint}, job=job, head=head)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @event_source(data_class=S3EventBridgeNotificationEvent)
    def handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict[str, Any]:
        idempotency.register_lambda_context(context)
        obj = event.detail.object
        key = obj.key  # URL-decoded by the data class
        logger.append_keys(key=key, style=style_name)
        if not keys.is_incoming(key):
            logger.warning("ignored: not an upload")
            return {"state": "skipped", "style": style_name, "message": "not under incoming/"}
        try:
            result = render(event.detail.bucket.name, key, obj.etag.strip('"'))
        except IdempotencyAlreadyInProgressError:
            # a copy of this event is rendering right now; if it fails, its own retry takes over
            logger.info("duplicate delivery while the first one is in progress")
            return {"state": "duplicate", "style": style_name, "source_key": key}
        except StoreError as exc:
            metrics.add_metric(name="Failures", unit=MetricUnit.Count, value=1)
            _record_failure(app, style_name, key, exc, logger)
            raise
        _emit(result, metrics, logger)
        return result

    return handler


def _record_failure(app: wiring.Adapters, style: str, key: str, exc: Exception, logger: Logger) -> None:
    """Best effort: say ``failed`` on the status item before Lambda retries (or gives up into the DLQ)."""
    try:
        head = app.store.head(key)
        upload = keys.describe(key, head.etag, head.metadata, styles.CPU_STYLES)
        failed = Outcome("failed", style, upload.image_id, key, upload.owner, message=str(exc))
        app.status.put_status(upload.image_id, style, {**failed.as_dict(), "updated_at": int(time.time())})
    except Exception:
        logger.exception("could not record the failure")
    logger.error("transient failure; Lambda will retry", extra={"error": str(exc)})


def _emit(result: dict[str, Any], metrics: Metrics, logger: Logger) -> None:
    if result.get("image_id"):
        logger.set_correlation_id(result["image_id"])
    state = result.get("state")
    if state == "done":
        timings = result.get("timings_ms", {})
        metrics.add_metric(name="RenderDuration", unit=MetricUnit.Milliseconds, value=timings.get("total", 0))
        metrics.add_metric(
            name="InputPixels",
            unit=MetricUnit.Count,
            value=result.get("input_width", 0) * result.get("input_height", 0),
        )
        metrics.add_metric(name="OutputBytes", unit=MetricUnit.Bytes, value=result.get("size_bytes", 0))
    elif state == "rejected":
        metrics.add_metric(name="Rejections", unit=MetricUnit.Count, value=1)
    cache = result.get("cache") or {}
    if cache.get("hit"):
        metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CacheDistance", unit=MetricUnit.Count, value=cache.get("distance", 0))
    elif cache:
        metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=1)
    logger.info("render finished", extra={"outcome": result})
