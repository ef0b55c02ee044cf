"""The upload API's Lambda entry point: ``POST /uploads`` (a presigned POST), ``GET /images`` (the caller's
uploads, newest first) and ``GET /images/{id}``.

The checks, the key and the policy conditions come from :mod:`atelier.domain.uploads`; this module signs them
(``generate_presigned_post``, ``generate_presigned_url``) and reads and writes the status table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from atelier.config import read_upload_settings
from atelier.domain import keys, options, status, uploads
from atelier.domain.uploads import UploadPlan, UploadRefused, UploadSettings
from atelier.entrypoints import Handler, wiring
from atelier.imaging import styles
from atelier.ports import NotFound, StoreError

SERVICE = "atelier-api"
LIST_DEFAULT, LIST_MAX = 20, 100  # GET /images: images a page


def _json(status: int, body: Any) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers={"Cache-Control": "no-store"},
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def presigned_post(s3: Any, bucket: str, plan: UploadPlan) -> dict[str, Any]:
    """Sign the plan's POST policy: the URL and the form fields the client sends before the file."""
    signed: dict[str, Any] = s3.generate_presigned_post(
        Bucket=bucket,
        Key=plan.key,
        Fields=dict(plan.fields),
        Conditions=list(plan.conditions),
        ExpiresIn=plan.expires_in,
    )
    return signed


def presigned_get(s3: Any, bucket: str, key: str, expires_in: int, download_as: str | None = None) -> str:
    """A short-lived GET URL of ``key``; with ``download_as``, one that saves the file under that name."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if download_as:
        fallback = download_as.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        params["ResponseContentDisposition"] = (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(download_as, safe='')}"
        )
    url: str = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
    return url


def api_handler(
    adapters: wiring.Adapters | None = None,
    *,
    accepted_styles: Sequence[str] = (*styles.CPU_STYLES, "anime", "upscale"),
    settings: UploadSettings | None = None,
) -> Handler:
    """Build the API's handler; clients and settings are built here, once per container."""
    app = adapters or wiring.build()
    settings = settings or read_upload_settings()
    accepted = tuple(accepted_styles)
    presigner = app.presigner
    logger = Logger(service=SERVICE)
    tracer = Tracer(service=SERVICE)
    resolver = APIGatewayHttpResolver()

    def caller() -> str:
        claims = resolver.current_event.request_context.authorizer.jwt_claim
        return uploads.owner_id(str(claims.get("sub") or ""))

    @resolver.post("/uploads")
    def create_upload() -> Response[str]:
        owner = caller()
        try:
            raw = resolver.current_event.decoded_body or ""
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise UploadRefused("invalid_request", f"the body is not JSON: {exc}") from exc
        request = uploads.parse_request(body, accepted, app.config.limits)
        plan = uploads.plan_upload(request, owner, app.config.limits, settings.upload_minutes * 60)
        now = int(time.time())
        app.board.grant(plan.image_id, uploads.image_record(plan), request.styles, plan.expires_in)
        signed = presigned_post(presigner, app.config.bucket, plan)
        logger.info(
            "upload granted", extra={"image_id": plan.image_id, "key": plan.key, "styles": request.styles}
        )
        return _json(
            201,
            {
                "image_id": plan.image_id,
                "key": plan.key,
                "filename": request.filename,
                "styles": list(request.styles),
                "max_bytes": plan.max_bytes,
                "expires_at": _iso(now + plan.expires_in),
                "status_url": f"/images/{plan.image_id}",
                "upload": {"url": signed["url"], "fields": signed["fields"]},
            },
        )

    def with_urls(view: dict[str, Any], now: int) -> dict[str, Any]:
        """The view with short-lived URLs of its original and of each finished render, in place of keys."""
        expires_in = settings.download_minutes * 60
        source_key = view.pop("source_key", None)
        if source_key:
            view["original_url"] = presigned_get(presigner, app.config.bucket, source_key, expires_in)
        for entry in view["styles"]:
            if entry["state"] == "done" and entry.get("output_key"):
                key = entry.pop("output_key")
                entry["url"] = presigned_get(presigner, app.config.bucket, key, expires_in)
                entry["download_url"] = presigned_get(
                    presigner, app.config.bucket, key, expires_in, entry["download_name"]
                )
            if entry.get("preview_key"):
                entry["preview_url"] = presigned_get(
                    presigner, app.config.bucket, entry.pop("preview_key"), expires_in
                )
        view["urls_expire_at"] = _iso(now + expires_in)
        return view

    @resolver.get("/styles")
    def list_styles() -> Response[str]:
        caller()
        return _json(200, {"styles": options.catalogue(accepted)})

    @resolver.get("/images")
    def list_images() -> Response[str]:
        owner = caller()
        query = resolver.current_event.query_string_parameters or {}
        raw_limit = query.get("limit") or str(LIST_DEFAULT)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIST_MAX:
            raise UploadRefused("invalid_request", f"limit must be a whole number from 1 to {LIST_MAX}")
        try:
            ids, cursor = app.board.images(owner, int(raw_limit), query.get("cursor") or None)
        except ValueError as exc:
            raise UploadRefused("invalid_request", str(exc)) from exc
        now = int(time.time())
        views = [status.view(i, app.board.items(i), owner, now) for i in ids]
        images = [with_urls(v, now) for v in views if v is not None]
        return _json(200, {"images": images, "next_cursor": cursor})

    def owned(image_id: str) -> tuple[str, list[dict[str, Any]], dict[str, Any], int]:
        """The caller, the image's items, its view and the time; 404 unless it is the caller's image."""
        owner = caller()
        not_found = UploadRefused("not_found", f"no image {image_id!r}", status=404)
        if not keys.is_image_id(image_id):
            raise not_found
        now = int(time.time())
        items = app.board.items(image_id)
        view = status.view(image_id, items, owner, now)
        if view is None:
            raise not_found
        return owner, items, view, now

    @resolver.get("/images/<image_id>")
    def get_image(image_id: str) -> Response[str]:
        _, _, view, now = owned(image_id)
        return _json(200, with_urls(view, now))

    @resolver.post("/images/<image_id>/retry")
    def retry_style(image_id: str) -> Response[str]:
        owner, items, view, now = owned(image_id)
        try:
            raw = resolver.current_event.decoded_body or ""
            style = (json.loads(raw) if raw else {}).get("style")
        except (ValueError, AttributeError) as exc:
            raise UploadRefused("invalid_request", 'the body must be JSON: {"style": "<style>"}') from exc
        if not isinstance(style, str):
            raise UploadRefused("invalid_request", 'name the style: {"style": "<style>"}', "style")
        entry = next((e for e in view["styles"] if e["style"] == style), None)
        if entry is None:
            raise UploadRefused("invalid_request", f"{image_id} did not ask for the style {style!r}")
        if entry["state"] != "failed":
            said = (
                "the photo itself was refused" if entry["state"] == "rejected" else f"it is {entry['state']}"
            )
            raise UploadRefused("conflict", f"only a failed style can be tried again; {said}", status=409)
        source = str(next(i for i in items if i.get("style") == status.IMAGE_RECORD).get("source_key", ""))
        try:
            head = app.store.head(source)
        except NotFound:
            raise UploadRefused(
                "conflict", "the photo is no longer stored; upload it again", status=409
            ) from None
        app.board.again(image_id, style, owner)
        # The same bytes with this style alone and a new retry mark: an ObjectCreated event for it alone
        metadata = {**{k.lower(): v for k, v in head.metadata.items()}, "styles": style, "retry": str(now)}
        app.store.copy(source, source, metadata, head.content_type)
        logger.info("retry", extra={"image_id": image_id, "style": style})
        answer = status.view(image_id, app.board.items(image_id), owner, now)
        assert answer is not None
        return _json(202, with_urls(answer, now))

    @resolver.exception_handler(UploadRefused)
    def refused(exc: UploadRefused) -> Response[str]:
        logger.info("refused", extra={"code": exc.code, "reason": exc.message})
        return _json(exc.status, exc.body())

    @resolver.exception_handler(StoreError)
    def store_failed(exc: StoreError) -> Response[str]:
        logger.exception("store error")
        return _json(503, {"error": {"code": "unavailable", "message": "storage is unavailable; try again"}})

    @resolver.not_found
    def no_route(exc: Exception) -> Response[str]:
        path = resolver.current_event.path
        return _json(404, {"error": {"code": "not_found", "message": f"no route {path}"}})

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return resolver.resolve(event, context)

    return handler
