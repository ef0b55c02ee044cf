"""The style handlers under moto: events in, renders and status items out; tables made from template.yaml."""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from atelier.config import AppConfig
from atelier.domain import keys
from atelier.domain.limits import Limits
from atelier.entrypoints import wiring
from atelier.entrypoints.lambda_style import style_handler
from atelier.ports import TransientStoreError
from tests.aws import MotoAws, lambda_context

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def ctx() -> Any:
    return lambda_context("SketchFunction")


@dataclass
class Env:
    s3: Any
    ddb: Any
    config: AppConfig

    def status(self, image_id: str) -> dict[str, dict[str, Any]]:
        from atelier.adapters.aws.status import DynamoStatusStore

        return {
            i["style"]: i for i in DynamoStatusStore(self.ddb, self.config.status_table).get_status(image_id)
        }

    def renders(self) -> list[str]:
        """The renders (not their previews)."""
        return [k for k in self._listed("renders/") if not k.startswith(keys.PREVIEWS)]

    def previews(self) -> list[str]:
        return self._listed(keys.PREVIEWS)

    def _listed(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.config.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
def aws(moto_aws: MotoAws) -> Env:
    return Env(moto_aws.s3, moto_aws.dynamodb, moto_aws.config())


def event_for(aws: Env, name: str, body: bytes, key: str | None = None) -> dict[str, Any]:
    """The sample event ``events/<name>.json``, after uploading ``body`` to its key."""
    from urllib.parse import unquote_plus

    event = json.loads((EVENTS / f"{name}.json").read_text())
    event = copy.deepcopy(event)
    if key is not None:
        from urllib.parse import quote_plus

        event["detail"]["object"]["key"] = quote_plus(key, safe="/")
    real_key = unquote_plus(event["detail"]["object"]["key"])
    put = aws.s3.put_object(Bucket=aws.config.bucket, Key=real_key, Body=body)
    event["detail"]["bucket"]["name"] = aws.config.bucket
    event["detail"]["object"]["etag"] = put["ETag"].strip('"')
    event["detail"]["object"]["size"] = len(body)
    return event


def handler(aws: Env, style: str = "sketch") -> Any:
    return style_handler(style, wiring.build(aws.config))


def test_sample_event_renders_and_records_done(aws: Env) -> None:
    body = (ROOT / "samples" / "chelsea.jpg").read_bytes()
    result = handler(aws)(event_for(aws, "sketch", body), ctx())
    assert result["state"] == "done"
    assert result["source_key"] == "incoming/sketch/red flower.jpg"  # URL-decoded
    assert result["image_id"].startswith("red-flower-")
    assert aws.renders() == [f"renders/{result['image_id']}/sketch.jpg"]
    assert aws.previews() == [f"renders/previews/{result['image_id']}/sketch.webp"]
    item = aws.status(result["image_id"])["sketch"]
    assert item["state"] == "done" and item["output_key"] == result["output_key"]
    assert item["preview_key"] == aws.previews()[0]
    assert 0 <= item["updated_at"] - item["started_at"] <= 60  # the claim's time, kept to the end
    assert item["width"] == 451 and item["height"] == 300 and item["format"] == "jpeg"
    assert item["size_bytes"] > 1000 and item["timings_ms"]["total"] > 0 and item["expires_at"] > 0


def test_same_file_name_twice_never_overwrites_the_first_render(aws: Env) -> None:
    h = handler(aws)
    first = h(event_for(aws, "sketch", (ROOT / "samples" / "chelsea.jpg").read_bytes()), ctx())
    second = h(event_for(aws, "sketch", (ROOT / "samples" / "astronaut.jpg").read_bytes()), ctx())
    assert first["image_id"] != second["image_id"]
    assert len(aws.renders()) == 2


def test_duplicate_event_gives_one_render_and_one_status_item(aws: Env) -> None:
    h = handler(aws)
    event = event_for(aws, "sketch", (ROOT / "samples" / "chelsea.jpg").read_bytes())
    first = h(event, ctx())
    aws.s3.delete_object(Bucket=aws.config.bucket, Key=first["output_key"])  # a re-render would bring it back
    second = h(copy.deepcopy(event), ctx())
    assert second == first  # the first's result, replayed: no second render
    assert aws.renders() == []
    assert aws.status(first["image_id"])["sketch"]["state"] == "done"
    assert list(aws.status(first["image_id"])) == ["sketch"]


def test_concurrent_duplicate_events_render_once(aws: Env) -> None:
    h = handler(aws)
    event = event_for(aws, "sketch", (ROOT / "samples" / "chelsea.jpg").read_bytes())
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(h(copy.deepcopy(event), ctx()))
        except IdempotencyAlreadyInProgressError:  # raised for Lambda to retry it once the first has ended
            results.append({"state": "in_progress"})

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = sorted(r["state"] for r in results)
    # the second copy finds the first in progress (Lambda retries it), or replays its result
    assert states in (["done", "in_progress"], ["done", "done"])
    assert len(aws.renders()) == 1
    assert len(aws.status(next(r for r in results if r["state"] == "done")["image_id"])) == 1


def test_corrupt_upload_is_rejected_with_its_reason_and_not_retried(aws: Env) -> None:
    body = (ROOT / "samples" / "chelsea.jpg").read_bytes()[:5000]
    result = handler(aws)(event_for(aws, "sketch", body, key="incoming/sketch/broken.jpg"), ctx())
    assert result["state"] == "rejected" and result["reason"] == "corrupt"
    item = aws.status(result["image_id"])["sketch"]
    assert item["state"] == "rejected" and "truncated" in item["message"]
    assert aws.renders() == []


def test_oversized_upload_is_rejected_without_reading_its_body(
    aws: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = wiring.build(
        AppConfig(
            aws.config.bucket, aws.config.status_table, aws.config.idempotency_table, Limits(max_bytes=10_000)
        )
    )
    reads: list[str] = []
    original = app.store.read

    def read(*args: Any, **kwargs: Any) -> bytes:
        reads.append("read")
        return original(*args, **kwargs)

    def read_range(*args: Any, **kwargs: Any) -> bytes:
        reads.append("range")
        return b""

    monkeypatch.setattr(app.store, "read", read)
    monkeypatch.setattr(app.store, "read_range", read_range)
    body = (ROOT / "samples" / "chelsea.jpg").read_bytes()
    result = style_handler("sketch", app)(
        event_for(aws, "sketch", body, key="incoming/sketch/big.jpg"), ctx()
    )
    assert result["state"] == "rejected" and result["reason"] == "too_large_bytes"
    assert reads == []


def test_text_file_named_jpg_is_rejected_as_unsupported(aws: Env) -> None:
    event = event_for(aws, "sketch", b"<html>not a photo</html>", key="incoming/sketch/page.jpg")
    result = handler(aws)(event, ctx())
    assert result["reason"] == "unsupported_format" and "HTML" in result["message"]


def test_transient_failure_raises_for_lambda_to_retry_and_waits_pending_saying_why(
    aws: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = wiring.build(aws.config)

    def throttled(*args: object, **kwargs: object) -> None:
        raise TransientStoreError("PutObject renders/...: SlowDown")

    monkeypatch.setattr(app.store, "put", throttled)
    h = style_handler("sketch", app)
    event = event_for(aws, "sketch", (ROOT / "samples" / "chelsea.jpg").read_bytes())
    with pytest.raises(TransientStoreError):
        h(event, ctx())
    items = aws.ddb.scan(TableName=aws.config.status_table)["Items"]
    assert [i["state"]["S"] for i in items] == ["pending"]  # not failed: Lambda retries it
    assert "SlowDown" in items[0]["last_error"]["S"]
    # the retry (here: the store recovered) renders, and the same item now says done
    retry = style_handler("sketch", wiring.build(aws.config))(event, ctx())
    assert retry["state"] == "done"
    assert [i["state"]["S"] for i in aws.ddb.scan(TableName=aws.config.status_table)["Items"]] == ["done"]


def test_a_style_not_requested_by_the_upload_is_skipped(aws: Env) -> None:
    body = (ROOT / "samples" / "chelsea.jpg").read_bytes()
    key = "incoming/all/u/alice/photo.jpg"
    aws.s3.put_object(Bucket=aws.config.bucket, Key=key, Body=body, Metadata={"styles": "oil,pencil"})
    event = event_for(aws, "sketch", body, key=key)
    aws.s3.put_object(Bucket=aws.config.bucket, Key=key, Body=body, Metadata={"styles": "oil,pencil"})
    result = handler(aws, "sketch")(event, ctx())
    assert result["state"] == "skipped" and aws.renders() == []
    done = handler(aws, "oil")(event, ctx())
    assert done["state"] == "done"


def test_an_event_for_a_key_outside_incoming_is_ignored(aws: Env) -> None:
    event = event_for(aws, "sketch", b"x", key="renders/abc/sketch.jpg")
    assert handler(aws)(event, ctx())["state"] == "skipped"
