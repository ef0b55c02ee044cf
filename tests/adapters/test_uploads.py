"""Uploads: the API handler under moto."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.config import AppConfig
from atelier.domain import uploads
from atelier.domain.limits import Limits
from atelier.domain.uploads import UploadSettings
from atelier.entrypoints import wiring
from atelier.entrypoints.api import api_handler
from atelier.imaging.styles import CPU_STYLES
from tests import imaging
from tests.aws import MotoAws, call_api, lambda_context

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits()
GOOD = {
    "filename": "red flower.jpg",
    "content_type": "image/jpeg",
    "size": 123_456,
    "styles": ["sketch", "oil"],
}
SMALL = {**GOOD, "size": 4000}  # under the API fixture's cap of 4096 bytes

# --- the API handler under moto ---------------------------------------------------------------------------


@dataclass
class Api:
    s3: Any
    ddb: Any
    config: AppConfig
    handler: Any

    def call(self, method: str, path: str, body: Any = None, sub: str | None = "dev-user") -> tuple[int, Any]:
        return call_api(self.handler, method, path, body, sub)

    def items(self, image_id: str) -> dict[str, dict[str, Any]]:
        return {
            i["style"]: i for i in DynamoStatusStore(self.ddb, self.config.status_table).get_status(image_id)
        }


@pytest.fixture
def api(moto_aws: MotoAws) -> Api:
    config = moto_aws.config(Limits(max_bytes=4096))
    handler = api_handler(wiring.build(config), settings=UploadSettings(5, 2))
    return Api(moto_aws.s3, moto_aws.dynamodb, config, handler)


def test_post_uploads_grants_a_presigned_post_and_records_the_image(api: Api) -> None:
    status, body = api.call("POST", "/uploads", SMALL)
    assert status == 201
    image_id = body["image_id"]
    assert body["key"] == f"incoming/all/u/dev-user/{image_id}/red flower.jpg"
    assert body["status_url"] == f"/images/{image_id}" and body["max_bytes"] == 4096
    fields = body["upload"]["fields"]
    assert fields["key"] == body["key"] and fields["x-amz-meta-styles"] == "sketch,oil"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 4000, 4000] in policy["conditions"]  # the declared size, exactly
    assert ["starts-with", "$Content-Type", "image/"] in policy["conditions"]
    for name in ("x-amz-meta-image-id", "x-amz-meta-owner", "x-amz-meta-styles", "key"):
        assert {name: fields[name]} in policy["conditions"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", policy["expiration"])
    items = api.items(image_id)
    assert set(items) == {"#image", "sketch", "oil"}
    assert items["#image"]["owner"] == "dev-user" and items["#image"]["styles"] == ["sketch", "oil"]
    assert items["#image"]["filename"] == "red flower.jpg" and items["#image"]["created_at"] > 0
    assert items["sketch"]["state"] == items["oil"]["state"] == "pending"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**SMALL, "size": 4097}, "too_large_bytes"),
        ({**SMALL, "content_type": "text/html"}, "unsupported_type"),
        ({**SMALL, "styles": ["cubism"]}, "unknown_style"),
        ({**SMALL, "filename": ""}, "bad_filename"),
        (b"{not json", "invalid_request"),
        (b"\xff\xfe\x00 not utf-8", "invalid_request"),
        (None, "invalid_request"),
    ],
)
def test_post_uploads_refuses_with_a_json_body_that_says_why(api: Api, body: Any, code: str) -> None:
    status, answer = api.call("POST", "/uploads", body)
    assert status == 400 and answer["error"]["code"] == code and answer["error"]["message"]
    assert api.ddb.scan(TableName=api.config.status_table)["Count"] == 0


def test_a_request_without_identity_is_unauthorized(api: Api) -> None:
    status, answer = api.call("POST", "/uploads", SMALL, sub=None)
    assert status == 401 and answer["error"]["code"] == "unauthorized"


def test_get_image_is_404_for_unknown_ids_and_for_other_owners(api: Api) -> None:
    _, granted = api.call("POST", "/uploads", SMALL)
    assert api.call("GET", f"/images/{uuid.uuid4().hex}")[0] == 404
    assert api.call("GET", "/images/..%2F..%2Fx")[0] == 404
    status, answer = api.call("GET", f"/images/{granted['image_id']}", sub="someone-else")
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = api.call("GET", f"/images/{granted['image_id']}")
    assert status == 200 and answer["state"] == "awaiting_upload"
    assert [(s["style"], s["state"]) for s in answer["styles"]] == [("sketch", "pending"), ("oil", "pending")]
    assert all("url" not in s for s in answer["styles"])


def test_get_image_gives_urls_for_done_styles_only_and_reasons_for_rejected_ones(api: Api) -> None:
    _, granted = api.call("POST", "/uploads", SMALL)
    image_id = granted["image_id"]
    store = DynamoStatusStore(api.ddb, api.config.status_table)
    output_key = f"renders/{image_id}/sketch.jpg"
    api.s3.put_object(Bucket=api.config.bucket, Key=output_key, Body=b"\xff\xd8\xff render")
    store.put_status(
        image_id, "sketch", {"state": "done", "output_key": output_key, "format": "jpeg", "width": 4}
    )
    store.put_status(image_id, "oil", {"state": "rejected", "reason": "corrupt", "message": "truncated JPEG"})
    status, answer = api.call("GET", f"/images/{image_id}")
    assert status == 200 and answer["state"] == "complete"
    sketch, oil = answer["styles"]
    assert sketch["state"] == "done" and sketch["download_name"] == "red flower-sketch.jpg"
    assert f"/{output_key}" in sketch["url"] and "X-Amz-Signature=" in sketch["url"]
    assert "response-content-disposition=attachment" in sketch["download_url"]
    assert "output_key" not in sketch
    assert oil == {"style": "oil", "state": "rejected", "reason": "corrupt", "message": "truncated JPEG"}


def test_get_images_lists_the_callers_uploads_newest_first_a_page_at_a_time(api: Api) -> None:
    granted = []
    for n in range(5):
        _, body = api.call("POST", "/uploads", {**SMALL, "filename": f"p{n}.jpg"})
        granted.append(body["image_id"])
        store = DynamoStatusStore(api.ddb, api.config.status_table)  # created_at to the second: spread them
        record = api.items(body["image_id"])["#image"]
        store.put_status(body["image_id"], "#image", {**record, "created_at": 1_000 + n})
    api.call("POST", "/uploads", SMALL, sub="someone-else")
    status, first = api.call("GET", "/images?limit=2")
    assert status == 200 and [i["filename"] for i in first["images"]] == ["p4.jpg", "p3.jpg"]
    assert first["images"][0]["state"] == "awaiting_upload" and first["next_cursor"]
    seen = [i["image_id"] for i in first["images"]]
    cursor = first["next_cursor"]
    while cursor:
        status, page = api.call("GET", f"/images?limit=2&cursor={cursor}")
        assert status == 200
        seen += [i["image_id"] for i in page["images"]]
        cursor = page["next_cursor"]
    assert seen == granted[::-1]  # all five, newest first, none of the other owner's
    status, theirs = api.call("GET", "/images", sub="someone-else")
    assert status == 200 and [i["filename"] for i in theirs["images"]] == ["red flower.jpg"]
    status, answer = api.call("GET", f"/images?limit=2&cursor={first['next_cursor']}", sub="someone-else")
    assert status == 400 and answer["error"]["code"] == "invalid_request"  # another owner's cursor
    for bad in ("limit=0", "limit=101", "limit=x", "cursor=not-a-cursor"):
        status, answer = api.call("GET", f"/images?{bad}")
        assert status == 400 and answer["error"]["code"] == "invalid_request", bad


def test_an_image_whose_photo_arrived_links_its_original(api: Api) -> None:
    _, granted = api.call("POST", "/uploads", SMALL)
    image_id = granted["image_id"]
    assert "original_url" not in api.call("GET", f"/images/{image_id}")[1]
    store = DynamoStatusStore(api.ddb, api.config.status_table)
    store.put_status(image_id, "sketch", {"state": "rendering", "source_key": granted["key"]})
    _, answer = api.call("GET", f"/images/{image_id}")
    assert quote(granted["key"]) in answer["original_url"] and "X-Amz-Signature=" in answer["original_url"]
    assert "source_key" not in answer


def test_get_styles_lists_every_style_with_its_options(api: Api) -> None:
    status, answer = api.call("GET", "/styles")
    assert status == 200
    by_name = {s["name"]: s for s in answer["styles"]}
    assert list(by_name) == [*CPU_STYLES, "anime", "upscale"]
    assert by_name["oil"]["title"] == "Oil painting"
    assert by_name["oil"]["options"]["strength"] == {"min": 0.0, "max": 1.0, "default": 0.5}
    models = {c["value"]: c["trained"] for c in by_name["anime"]["options"]["model"]["choices"]}
    assert models["face_paint_512_v2"] is True and models["animeganv2-dev"] is False
    assert [c["value"] for c in by_name["upscale"]["options"]["factor"]["choices"]] == [2, 3, 4]
    assert api.call("GET", "/styles", sub=None)[0] == 401


def test_an_unknown_route_is_a_json_404(api: Api) -> None:
    status, answer = api.call("GET", "/nowhere")
    assert status == 404 and answer["error"]["code"] == "not_found"


def test_only_an_upload_asking_for_the_upscale_goes_where_the_gpu_queue_listens() -> None:
    request = uploads.parse_request(
        {**GOOD, "styles": ["sketch", "upscale"]}, (*CPU_STYLES, "upscale"), LIMITS
    )
    plan = uploads.plan_upload(request, "alice", LIMITS, 600)
    assert plan.key.startswith("incoming/all-upscale/u/alice/")
    plain = uploads.plan_upload(uploads.parse_request(GOOD, CPU_STYLES, LIMITS), "alice", LIMITS, 600)
    assert plain.key.startswith("incoming/all/u/alice/")


def _arrived(api: Api, granted: dict[str, Any], body: bytes) -> None:
    """The photo posted as the presigned form would: its key and the form's metadata."""
    fields = granted["upload"]["fields"]
    metadata = {k.removeprefix("x-amz-meta-"): v for k, v in fields.items() if k.startswith("x-amz-meta-")}
    api.s3.put_object(
        Bucket=api.config.bucket, Key=granted["key"], Body=body, Metadata=metadata, ContentType="image/jpeg"
    )


def context(function: str) -> Any:
    """A Lambda context as the local runtime gives one (typed loosely, as the handlers' tests do)."""
    return lambda_context(function)


def _created(api: Api, key: str) -> dict[str, Any]:
    """The EventBridge "Object Created" event of ``key`` as it is now."""
    head = api.s3.head_object(Bucket=api.config.bucket, Key=key)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-12-06T12:00:00Z",
        "detail": {
            "bucket": {"name": api.config.bucket},
            "object": {"key": key, "size": head["ContentLength"], "etag": head["ETag"].strip('"')},
        },
    }


def test_a_failed_style_is_tried_again_alone_as_a_new_job(api: Api) -> None:
    from atelier.entrypoints.lambda_style import style_handler

    _, granted = api.call("POST", "/uploads", SMALL)
    image_id = granted["image_id"]
    _arrived(api, granted, imaging.jpeg(imaging.photo(48, 32)))  # under this API's 4 KiB cap
    store = DynamoStatusStore(api.ddb, api.config.status_table)
    adapters = wiring.build(api.config)
    first = _created(api, granted["key"])
    assert style_handler("oil", adapters)(first, context("OilFunction"))["state"] == "done"
    # say it failed after all (its last attempt timed out): its idempotency record stays behind
    store.put_status(image_id, "sketch", {"state": "done", "output_key": f"renders/{image_id}/sketch.jpg"})
    store.put_status(image_id, "oil", {"state": "failed", "reason": "timed_out", "job": "old-job"})
    status, answer = api.call("POST", f"/images/{image_id}/retry", {"style": "oil"})
    assert status == 202
    assert {s["style"]: s["state"] for s in answer["styles"]} == {"sketch": "done", "oil": "pending"}
    head = api.s3.head_object(Bucket=api.config.bucket, Key=granted["key"])
    assert head["Metadata"]["styles"] == "oil" and head["Metadata"]["retry"].isdigit()
    assert head["Metadata"]["owner"] == "dev-user" and head["ContentType"] == "image/jpeg"
    # the copy's ObjectCreated event, as each style function sees it: oil renders anew (the same bytes, so
    # the same ETag, but a new job: not a replay of the first), sketch is left alone
    event = _created(api, granted["key"])
    assert style_handler("oil", adapters)(event, context("OilFunction"))["state"] == "done"
    assert style_handler("sketch", adapters)(event, context("SketchFunction"))["state"] == "skipped"
    _, view = api.call("GET", f"/images/{image_id}")
    assert {s["style"]: s["state"] for s in view["styles"]} == {"sketch": "done", "oil": "done"}


def test_only_a_failed_style_of_ones_own_stored_photo_can_be_tried_again(api: Api) -> None:
    _, granted = api.call("POST", "/uploads", SMALL)
    image_id = granted["image_id"]
    store = DynamoStatusStore(api.ddb, api.config.status_table)
    store.put_status(image_id, "sketch", {"state": "rejected", "reason": "corrupt", "message": "truncated"})
    store.put_status(image_id, "oil", {"state": "failed", "reason": "timed_out"})
    retry = f"/images/{image_id}/retry"
    assert api.call("POST", retry, {"style": "oil"}, sub="someone-else")[0] == 404
    assert api.call("POST", retry, {"style": "pencil"})[1]["error"]["code"] == "invalid_request"
    assert api.call("POST", retry, {})[1]["error"]["code"] == "invalid_request"
    status, answer = api.call("POST", retry, {"style": "sketch"})
    assert status == 409 and "refused" in answer["error"]["message"]
    status, answer = api.call("POST", retry, {"style": "oil"})  # the photo never arrived
    assert status == 409 and "no longer stored" in answer["error"]["message"]
    assert api.items(image_id)["oil"]["state"] == "failed"  # nothing changed
