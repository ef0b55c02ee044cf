"""Every job ends: permanent failures fail at once, and Lambda's give-up is marked by the dead-letter marker.
Under moto (S3, DynamoDB, SQS)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys, status
from atelier.entrypoints import wiring
from atelier.entrypoints.deadletter import deadletter_handler
from atelier.entrypoints.lambda_anime import anime_handler
from atelier.entrypoints.lambda_style import style_handler
from atelier_dev.local.dispatcher import object_created_event
from tests.aws import MotoAws, lambda_context

ROOT = Path(__file__).resolve().parents[2]
PHOTO = (ROOT / "samples" / "chelsea.jpg").read_bytes()


def put(moto_aws: MotoAws, key: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Upload ``key`` and return its S3 "Object Created" event."""
    put = moto_aws.s3.put_object(Bucket=moto_aws.bucket, Key=key, Body=PHOTO, Metadata=metadata or {})
    return object_created_event(moto_aws.bucket, key, size=len(PHOTO), etag=put["ETag"])


def items(moto_aws: MotoAws, image_id: str) -> dict[str, dict[str, Any]]:
    store = DynamoStatusStore(moto_aws.dynamodb, moto_aws.env["ATELIER_STATUS_TABLE"])
    return {i["style"]: i for i in store.get_status(image_id)}


def image_id_of(moto_aws: MotoAws, key: str) -> str:
    head = moto_aws.s3.head_object(Bucket=moto_aws.bucket, Key=key)
    return keys.describe(key, head["ETag"].strip('"'), head["Metadata"]).image_id


@pytest.fixture
def anime(moto_aws: MotoAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ATELIER_MODEL_DIR", str(tmp_path / "models"))  # an empty model cache
    env = {"ATELIER_MODEL_PREFIX": f"s3://{moto_aws.bucket}/models", "ATELIER_ANIME_PROVIDER": "cpu"}
    return anime_handler(wiring.build(moto_aws.config()), env=env)


@pytest.mark.parametrize(
    ("key", "reason", "says"),
    [
        ("incoming/anime/cat.jpg", "model_unavailable", "face_paint_512_v2 is not installed: put its ONNX"),
        ("incoming/anime/animeganv2-dev-nhwc/cat.jpg", "model_unpinned", "no SHA-256 to check it against"),
    ],
)
def test_a_model_that_cannot_load_fails_at_once_into_the_dead_letter_queue(
    moto_aws: MotoAws, anime: Any, key: str, reason: str, says: str
) -> None:
    event = put(moto_aws, key)
    result = anime(event, lambda_context("AnimeFunction"))  # returns: Lambda does not retry it
    assert (result["state"], result["reason"]) == ("failed", reason) and says in result["message"]
    item = items(moto_aws, image_id_of(moto_aws, key))["anime"]
    assert (item["state"], item["reason"], item["message"]) == ("failed", reason, result["message"])
    (record,) = moto_aws.messages("RenderDeadLetterQueue")
    assert record["job"] == {
        "image_id": item["image_id"],
        "style": "anime",
        "reason": reason,
        "message": result["message"],
    }
    assert record["requestContext"]["condition"] == "PermanentFailure"
    assert record["requestPayload"]["detail"]["object"]["key"] == event["detail"]["object"]["key"]
    # the same event again (a duplicate delivery) leaves it as it is: one failure, one record
    again = anime(event, lambda_context("AnimeFunction"))
    assert again == result and len(moto_aws.messages("RenderDeadLetterQueue")) == 1


def give_up(event: dict[str, Any], function_arn: str, error_type: str, message: str) -> dict[str, Any]:
    """The record Lambda sends the on-failure destination after the last retry."""
    return {
        "version": "1.0",
        "requestContext": {
            "requestId": "r-1",
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": error_type, "errorMessage": message},
    }


@pytest.fixture
def marker(moto_aws: MotoAws) -> Any:
    prefix = lambda_context("SketchFunction").function_name.removesuffix("sketch")
    env = {**moto_aws.env, "ATELIER_DEAD_LETTER_QUEUE_URL": moto_aws.queue_urls["RenderDeadLetterQueue"]}
    env["ATELIER_FUNCTION_PREFIX"] = prefix
    return deadletter_handler(wiring.build(moto_aws.config()), env=env)


@pytest.mark.parametrize(
    ("error_type", "error", "reason"),
    [
        ("TransientStoreError", "PutObject renders/x: SlowDown", "retries_exhausted"),
        ("Sandbox.Timedout", "Task timed out after 60.00 seconds", "timed_out"),
    ],
)
def test_the_marker_fails_the_job_lambda_gave_up_on_and_keeps_its_record(
    moto_aws: MotoAws, marker: Any, error_type: str, error: str, reason: str
) -> None:
    key = "incoming/sketch/cat.jpg"
    event = put(moto_aws, key)
    sketch = lambda_context("SketchFunction")
    result = marker(
        give_up(event, sketch.invoked_function_arn, error_type, error), lambda_context("DeadLetterFunction")
    )
    assert result == {
        "state": "failed",
        "image_id": image_id_of(moto_aws, key),
        "style": "sketch",
        "reason": reason,
    }
    item = items(moto_aws, result["image_id"])["sketch"]
    assert (item["state"], item["reason"]) == ("failed", reason)
    assert item["message"] == f"{error} (after 3 attempts)"
    (record,) = moto_aws.messages("RenderDeadLetterQueue")
    assert record["job"]["style"] == "sketch" and record["responsePayload"]["errorType"] == error_type


def test_the_marker_leaves_a_job_that_a_copy_of_the_event_finished(moto_aws: MotoAws, marker: Any) -> None:
    key = "incoming/sketch/cat.jpg"
    event = put(moto_aws, key)
    app = wiring.build(moto_aws.config())
    context: Any = lambda_context("SketchFunction")
    done = style_handler("sketch", app)(event, context)
    assert done["state"] == "done"
    arn = lambda_context("SketchFunction").invoked_function_arn
    result = marker(give_up(event, arn, "Error", "boom"), lambda_context("DeadLetterFunction"))
    assert result["state"] == "ended" and items(moto_aws, done["image_id"])["sketch"]["state"] == "done"
    assert moto_aws.messages("RenderDeadLetterQueue") == []


def test_the_marker_leaves_a_job_a_live_copy_holds_but_not_its_own_crashed_claim(
    moto_aws: MotoAws, marker: Any
) -> None:
    key = "incoming/sketch/cat.jpg"
    event = put(moto_aws, key)
    app = wiring.build(moto_aws.config())
    head = app.store.head(key)
    upload = keys.describe(key, head.etag, head.metadata)
    fields = status.job_fields(upload, head.etag, head.metadata)
    holder = {**fields, "request_id": "another-copy"}
    app.board.rendering(upload.image_id, "sketch", int(time.time()) + 60, holder)  # it holds the job
    arn = lambda_context("SketchFunction").invoked_function_arn
    error = "Execution already in progress with idempotency key: ..."
    held = give_up(event, arn, "IdempotencyAlreadyInProgressError", error)  # requestId r-1
    assert marker(held, lambda_context("DeadLetterFunction"))["state"] == "held"
    assert items(moto_aws, upload.image_id)["sketch"]["state"] == "rendering"
    assert moto_aws.messages("RenderDeadLetterQueue") == []
    # the same invocation's own claim, left by its last attempt's crash, is no live copy: failed
    app.board.rendering(upload.image_id, "sketch", int(time.time()) + 60, {**fields, "request_id": "r-1"})
    crashed = give_up(event, arn, "Runtime.ExitError", "Runtime exited with error: signal: killed")
    assert marker(crashed, lambda_context("DeadLetterFunction"))["state"] == "failed"
    assert items(moto_aws, upload.image_id)["sketch"]["state"] == "failed"
    assert len(moto_aws.messages("RenderDeadLetterQueue")) == 1
