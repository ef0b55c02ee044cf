"""The Lambda entry point shared by every style function: Powertools around one call into the core."""

from __future__ import annotations

import contextlib
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
from aws_lambda_powertools.utilities.idempotency.serialization.dataclass import DataclassSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext

from atelier.domain import keys, status
from atelier.domain.errors import JobFailed
from atelier.entrypoints import Handler, wiring
from atelier.entrypoints.deadletter import failure_record, with_job
from atelier.imaging import styles
from atelier.pipeline import Outcome, StyleJob, render_object, style_job
from atelier.ports import NotFound, ObjectHead, StoreError

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
    version: Callable[[str, dict[str, str]], str] | None = None,
) -> Handler:
    """Build the handler of one style; everything expensive is built here, once per container.

    ``resolver`` picks the job per upload from its key and metadata (the anime model variant, say);
    without it the style's own renderer runs with the options the object's metadata asks for (its
    ``strength``; see :func:`atelier.pipeline.style_job`). ``version`` names the job's version cheaply,
    before a model loads (default: the resolved job's fingerprint); it is in the idempotency key.

    One copy of an event holds the job at a time (the idempotency record); it says ``rendering`` from the
    moment it holds it. A job that can never run (JobFailed: a missing model, a bad option) ends ``failed``
    at once, its record in the dead-letter queue; a store error is raised for Lambda to retry, and the
    function's on-failure destination (:mod:`atelier.entrypoints.deadletter`) fails the job after the
    last retry.
    """
    resolve = resolver or cpu_resolver(styles.get(style_name))
    version_of = version or (lambda key, metadata: resolve(key, metadata).fingerprint)
    service = f"atelier-{style_name}"
    logger = Logger(service=service)
    tracer = Tracer(service=service)
    metrics = Metrics(namespace="Atelier", service=service)
    app = adapters or wiring.build()
    persistence = DynamoDBPersistenceLayer(table_name=app.config.idempotency_table, boto3_client=app.dynamodb)
    idempotency = IdempotencyConfig(expires_after_seconds=24 * 3600, raise_on_no_idempotency_key=True)

    def fail_now(
        failed: JobFailed,
        fields: dict[str, Any],
        event: S3EventBridgeNotificationEvent,
        context: LambdaContext,
    ) -> Outcome:
        """Permanent: failed at once, its record kept in the dead-letter queue (once), never retried."""
        image_id = str(fields["image_id"])
        if app.board.fail(image_id, style_name, failed.reason, failed.message, fields):
            record = failure_record(
                event.raw_event, context, "PermanentFailure", failed.reason, failed.message
            )
            if app.dead_letters is not None:
                app.dead_letters.send(with_job(record, image_id, style_name, failed.reason, failed.message))
        return Outcome(
            "failed", style_name, image_id, reason=failed.reason, message=failed.message, extra=dict(fields)
        )

    @idempotent_function(
        data_keyword_argument="request",
        persistence_store=persistence,
        config=idempotency,
        output_serializer=DataclassSerializer(Outcome),
    )
    def render_once(
        request: dict[str, str],
        head: ObjectHead,
        fields: dict[str, Any],
        deadline_at: int,
        event: S3EventBridgeNotificationEvent,
        context: LambdaContext,
    ) -> Outcome:
        image_id, key = str(fields["image_id"]), request["key"]
        # the invocation's request id (the same on Lambda's retries of it) tells the dead-letter marker
        # whether a claim it finds is this invocation's own or a live copy's
        claim = {**fields, "request_id": getattr(context, "aws_request_id", "")}
        if not app.board.rendering(image_id, style_name, deadline_at, claim):
            return Outcome("skipped", style_name, source_key=key, message="already finished")
        try:
            job = resolve(key, dict(head.metadata))
        except JobFailed as failed:
            return fail_now(failed, fields, event, context)
        return render_object(
            app.store,
            app.board,
            key,
            request["etag"],
            job,
            app.config.limits,
            deadline_at,
            cache=app.cache,
            head=head,
            claimed=True,
        )

    def render(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> Outcome:
        obj = event.detail.object
        key, etag = obj.key, obj.etag.strip('"')  # the key is URL-decoded by the data class

        def skipped(message: str, image_id: str = "") -> Outcome:
            return Outcome("skipped", style_name, image_id, key, message=message)

        # The one HeadObject of the event: its metadata picks the job, and render_object reuses it.
        try:
            head = app.store.head(key)
        except NotFound:
            return skipped("the object was deleted")
        if etag and head.etag != etag:
            return skipped("the object was replaced; the newer upload renders")
        upload = keys.describe(key, head.etag, head.metadata)
        if style_name not in upload.styles:
            return skipped("style not requested", upload.image_id)
        fields = status.job_fields(upload, head.etag, head.metadata)
        try:
            version = version_of(key, dict(head.metadata))
        except JobFailed as failed:  # a bad option: known before any lock is taken
            return fail_now(failed, fields, event, context)
        # the job (its bytes and its metadata: a retry's copy onto itself changes only the metadata) keys
        # the idempotency record, so a copy of one event replays and a new job of the same bytes runs
        request = {"bucket": event.detail.bucket.name, "key": key, "etag": etag, "style": style_name}
        request["job"] = str(fields["job"])
        deadline_at = int(time.time() + context.get_remaining_time_in_millis() / 1000)
        try:
            return render_once(
                request={**request, "style_version": version},
                head=head,
                fields=fields,
                deadline_at=deadline_at,
                event=event,
                context=context,
            )
        except StoreError as exc:
            # transient, or so Lambda assumes: pending until the retry; after the last one the dead-letter
            # marker (the on-failure destination) says failed
            metrics.add_metric(name="Failures", unit=MetricUnit.Count, value=1)
            with contextlib.suppress(Exception):
                app.board.retrying(upload.image_id, style_name, str(exc), fields)
            logger.error("transient failure; Lambda will retry", extra={"error": str(exc)})
            raise

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @event_source(data_class=S3EventBridgeNotificationEvent)
    def handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict[str, Any]:
        idempotency.register_lambda_context(context)
        key = event.detail.object.key
        logger.append_keys(key=key, style=style_name)
        if not keys.is_incoming(key):
            logger.warning("ignored: not an upload")
            return Outcome("skipped", style_name, message="not under incoming/").as_dict()
        try:
            outcome = render(event, context)
        except IdempotencyAlreadyInProgressError:
            # A copy of this event is rendering, or was until its invocation died. Raise, so Lambda retries
            # after its backoff: by then the copy has ended (the retry finds it done) or its claim on the
            # job has expired with its invocation (the retry renders). Returning would lose the job.
            logger.info("a copy of this event holds the job; Lambda retries it")
            raise
        _emit(outcome, metrics, logger)
        return outcome.as_dict()

    return handler


def _emit(outcome: Outcome, metrics: Metrics, logger: Logger) -> None:
    if outcome.image_id:
        logger.set_correlation_id(outcome.image_id)
    if outcome.state == "done":
        total = outcome.timings_ms.get("total", 0)
        metrics.add_metric(name="RenderDuration", unit=MetricUnit.Milliseconds, value=total)
        pixels = outcome.input_width * outcome.input_height
        metrics.add_metric(name="InputPixels", unit=MetricUnit.Count, value=pixels)
        metrics.add_metric(name="OutputBytes", unit=MetricUnit.Bytes, value=outcome.size_bytes)
    elif outcome.state == "rejected":
        metrics.add_metric(name="Rejections", unit=MetricUnit.Count, value=1)
    cache = outcome.cache
    if cache.get("hit"):
        metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CacheDistance", unit=MetricUnit.Count, value=cache.get("distance", 0))
    elif cache:
        metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=1)
    logger.info("render finished", extra={"outcome": outcome.as_dict()})
