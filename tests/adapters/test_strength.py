"""The CPU styles' ``strength`` option through the handler under moto: the object's metadata, the
near-duplicate cache and the idempotency key.

The styles' renders are swapped for one that records the strength it got and returns the photo (the
``seen`` fixture of tests/conftest.py), so these tests say nothing about (and do not depend on) what a style
looks like.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from atelier.domain import keys, status, uploads
from atelier.domain.limits import Limits
from atelier.entrypoints import wiring
from atelier.entrypoints.lambda_style import style_handler
from atelier.imaging import styles
from tests.aws import MotoAws, lambda_context

ROOT = Path(__file__).resolve().parents[2]
PHOTO = (ROOT / "samples" / "chelsea.jpg").read_bytes()
GOOD = {"filename": "cat.jpg", "content_type": "image/jpeg", "size": 1000, "styles": ["sketch", "oil"]}


def ctx(function: str = "SketchFunction") -> Any:
    return lambda_context(function)


def default(name: str) -> float:
    return float(styles.get(name).defaults["strength"])


# --- the handler under moto ------------------------------------------------------------------------------


def _put(moto_aws: MotoAws, key: str, metadata: dict[str, str], body: bytes = PHOTO) -> dict[str, Any]:
    etag = moto_aws.s3.put_object(Bucket=moto_aws.bucket, Key=key, Body=body, Metadata=metadata)["ETag"]
    return _event(moto_aws, key, etag.strip('"'))


def _event(moto_aws: MotoAws, key: str, etag: str) -> dict[str, Any]:
    from urllib.parse import quote_plus

    event = json.loads((ROOT / "events" / "sketch.json").read_text())
    event["detail"]["bucket"]["name"] = moto_aws.bucket
    event["detail"]["object"].update(key=quote_plus(key, safe="/"), etag=etag, size=len(PHOTO))
    return event


def _status(moto_aws: MotoAws, image_id: str, style: str) -> dict[str, Any]:
    from atelier.adapters.aws.status import DynamoStatusStore

    items = DynamoStatusStore(moto_aws.dynamodb, moto_aws.env["ATELIER_STATUS_TABLE"]).get_status(image_id)
    return next(i for i in items if i["style"] == style)


def _renders(moto_aws: MotoAws) -> list[str]:
    listed = moto_aws.s3.list_objects_v2(Bucket=moto_aws.bucket, Prefix="renders/")
    return sorted(o["Key"] for o in listed.get("Contents", []) if not o["Key"].startswith(keys.PREVIEWS))


def _app(moto_aws: MotoAws, cache: bool = False) -> wiring.Adapters:
    config = moto_aws.config()
    if cache:
        config = dataclasses.replace(config, phash_table=moto_aws.env["ATELIER_PHASH_TABLE"])
    return wiring.build(config)


def test_the_handler_renders_at_the_strength_the_upload_api_pinned(
    moto_aws: MotoAws, seen: dict[str, list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(moto_aws)
    heads: list[str] = []
    original = app.store.head

    def head(key: str) -> Any:
        heads.append(key)
        return original(key)

    monkeypatch.setattr(app.store, "head", head)
    request = uploads.parse_request(
        {**GOOD, "options": {"sketch": {"strength": 0.7}}}, styles.CPU_STYLES, Limits()
    )
    plan = uploads.plan_upload(request, "alice", Limits(), 600)
    metadata = {k.removeprefix("x-amz-meta-"): v for k, v in plan.fields.items() if k.startswith("x-amz-")}
    event = _put(moto_aws, plan.key, metadata)
    sketch = style_handler("sketch", app)(event, ctx())
    assert sketch["state"] == "done" and seen["sketch"] == [0.7]
    assert heads == [plan.key]  # the handler's one HeadObject: render_object reuses it
    item = _status(moto_aws, plan.image_id, "sketch")
    assert item["style_fingerprint"] == styles.get("sketch").fingerprint({"strength": 0.7})
    oil = style_handler("oil", app)(event, ctx("OilFunction"))
    assert oil["state"] == "done" and seen["oil"] == [default("oil")]


def test_a_drop_in_takes_plain_strength_metadata(moto_aws: MotoAws, seen: dict[str, list[float]]) -> None:
    event = _put(moto_aws, "incoming/sketch/cat.jpg", {"strength": "0.8"})
    result = style_handler("sketch", _app(moto_aws))(event, ctx())
    assert result["state"] == "done" and seen["sketch"] == [0.8]


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({"strength": "1.5"}, "the metadata x-amz-meta-strength must be a number from 0 to 1, not '1.5'"),
        (
            {"options": '{"sketch": {"strength": 2}}'},
            "the metadata x-amz-meta-options: sketch.strength must be a number from 0 to 1, not 2",
        ),
    ],
)
def test_an_invalid_strength_in_metadata_fails_once_saying_why(
    moto_aws: MotoAws, seen: dict[str, list[float]], metadata: dict[str, str], says: str
) -> None:
    event = _put(moto_aws, "incoming/sketch/cat.jpg", metadata)
    handler = style_handler("sketch", _app(moto_aws))
    result = handler(event, ctx())  # returns: Lambda does not retry it
    assert (result["state"], result["reason"], result["message"]) == ("failed", "invalid_option", says)
    item = _status(moto_aws, result["image_id"], "sketch")
    assert (item["state"], item["reason"], item["message"]) == ("failed", "invalid_option", says)
    assert seen["sketch"] == [] and _renders(moto_aws) == []
    view = status.view(
        result["image_id"],
        [{"style": status.IMAGE_RECORD, "owner": "bucket", "styles": ["sketch"]}, item],
        "bucket",
        0,
    )
    assert view is not None and view["styles"][0]["reason"] == "invalid_option"


def test_an_invalid_strength_for_a_style_not_requested_is_skipped(
    moto_aws: MotoAws, seen: dict[str, list[float]]
) -> None:
    event = _put(moto_aws, "incoming/all/u/alice/cat.jpg", {"styles": "oil", "strength": "9"})
    result = style_handler("sketch", _app(moto_aws))(event, ctx())
    assert result["state"] == "skipped"


def test_the_cache_never_serves_a_render_made_at_another_strength(
    moto_aws: MotoAws, seen: dict[str, list[float]]
) -> None:
    app = _app(moto_aws, cache=True)
    assert app.cache is not None
    handler = style_handler("sketch", app)
    results = [
        handler(_put(moto_aws, f"incoming/sketch/{name}.jpg", meta), ctx())
        for name, meta in (("a", {"strength": "0.3"}), ("b", {"strength": "0.8"}), ("c", {"strength": "0.8"}))
    ]
    assert [r["state"] for r in results] == ["done", "done", "done"]
    assert [r["cache"]["hit"] for r in results] == [False, False, True]  # the same photo at 0.8 reuses
    assert results[2]["cache"]["source_image_id"] == results[1]["image_id"]
    assert seen["sketch"] == [0.3, 0.8]


def test_new_metadata_on_the_same_bytes_is_a_new_render_not_an_idempotent_replay(
    moto_aws: MotoAws, seen: dict[str, list[float]]
) -> None:
    handler = style_handler("sketch", _app(moto_aws))
    key = "incoming/sketch/cat.jpg"
    first = handler(_put(moto_aws, key, {"strength": "0.3"}), ctx())
    # `aws s3 cp s3://b/k s3://b/k --metadata strength=0.8 --metadata-directive REPLACE`: the same ETag
    copied = moto_aws.s3.copy_object(
        Bucket=moto_aws.bucket,
        Key=key,
        CopySource={"Bucket": moto_aws.bucket, "Key": key},
        Metadata={"strength": "0.8"},
        MetadataDirective="REPLACE",
    )
    etag = copied["CopyObjectResult"]["ETag"].strip('"')
    assert etag == first["source_etag"]
    second = handler(_event(moto_aws, key, etag), ctx())
    assert second["state"] == "done" and seen["sketch"] == [0.3, 0.8]
    assert _status(moto_aws, second["image_id"], "sketch")["style_fingerprint"] == styles.get(
        "sketch"
    ).fingerprint({"strength": 0.8})
