"""The real style handlers on the local stack: SeaweedFS, moto, and the dispatcher playing EventBridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from atelier.adapters.aws.s3 import S3ObjectStore
from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys
from atelier.ports import TransientStoreError
from atelier_dev.local.dispatcher import Dispatcher
from atelier_dev.local.stack import LocalStack
from tests.events import EVENTS, PHOTO_OF

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
STYLES = ("sketch", "pencil", "oil", "watercolor")


def own_photo(seed: str) -> bytes:
    """A photo no other test uploads, so the near-duplicate cache cannot answer for it."""
    import random

    import cv2
    import numpy as np

    rnd = random.Random(seed)
    img = cv2.imread(str(SAMPLES / "chelsea.jpg"))
    img = np.ascontiguousarray(np.rot90(img, rnd.randrange(4)))
    for _ in range(6):
        x, y = rnd.randrange(img.shape[1]), rnd.randrange(img.shape[0])
        color = tuple(rnd.randrange(256) for _ in range(3))
        cv2.circle(img, (x, y), rnd.randrange(20, 90), color, -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def put(stack: LocalStack, key: str, body: bytes) -> str:
    """Upload and return the image id the handlers will give it."""
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"].strip('"')
    return keys.drop_in_image_id(key, etag)


def status(stack: LocalStack, image_id: str) -> dict[str, dict[str, Any]]:
    store = DynamoStatusStore(stack.dynamodb, stack.env["ATELIER_STATUS_TABLE"])
    return {i["style"]: i for i in store.get_status(image_id)}


def wait_states(
    stack: LocalStack, image_id: str, styles: tuple[str, ...], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = status(stack, image_id)
        if all(items.get(s, {}).get("state") in ("done", "rejected", "failed") for s in styles):
            return items
        time.sleep(0.2)
    raise AssertionError(f"{image_id}: not finished in {timeout} s: {status(stack, image_id)}")


def renders(stack: LocalStack, image_id: str) -> list[str]:
    page = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"renders/{image_id}/")
    return sorted(o["Key"] for o in page.get("Contents", []))


def test_upload_to_all_renders_every_style(local_stack: LocalStack, unique_id: str) -> None:
    image_id = put(local_stack, f"incoming/all/{unique_id}/cat.jpg", (SAMPLES / "chelsea.jpg").read_bytes())
    items = wait_states(local_stack, image_id, STYLES)
    assert {s: items[s]["state"] for s in STYLES} == dict.fromkeys(STYLES, "done")
    assert renders(local_stack, image_id) == [f"renders/{image_id}/{s}.jpg" for s in sorted(STYLES)]
    for s in STYLES:
        body = local_stack.s3.get_object(Bucket=local_stack.bucket, Key=items[s]["output_key"])["Body"].read()
        assert body[:3] == b"\xff\xd8\xff" and items[s]["size_bytes"] == len(body)


def test_duplicate_and_concurrent_duplicate_events_give_one_render(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str
) -> None:
    key = f"incoming/sketch/{unique_id}/dup.jpg"
    image_id = put(local_stack, key, (SAMPLES / "chelsea.jpg").read_bytes())
    wait_states(local_stack, image_id, ("sketch",))
    event = dispatcher.object_event(key)
    dispatcher.emit(event)  # delivered again, after the first finished
    threads = [threading.Thread(target=dispatcher.emit, args=(event,)) for _ in range(3)]  # and at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dispatcher.wait_idle(timeout=60)
    results = [i.result for i in dispatcher.invocations("SketchFunction") if i.key and unique_id in i.key]
    assert len(results) == 5 and all(r == results[0] and r["state"] == "done" for r in results)  # replayed
    assert renders(local_stack, image_id) == [f"renders/{image_id}/sketch.jpg"]
    assert list(status(local_stack, image_id)) == ["sketch"]


def test_corrupt_and_oversized_are_rejected_while_the_batch_renders(
    local_stack: LocalStack, unique_id: str
) -> None:
    good = (SAMPLES / "astronaut.jpg").read_bytes()
    oversized = good[:2000] + os.urandom(41 * 1024 * 1024)
    ids = {
        "good": put(local_stack, f"incoming/oil/{unique_id}/good.jpg", good),
        "corrupt": put(local_stack, f"incoming/oil/{unique_id}/half.jpg", good[: len(good) // 2]),
        "oversized": put(local_stack, f"incoming/oil/{unique_id}/huge.jpg", oversized),
        "text": put(local_stack, f"incoming/oil/{unique_id}/notes.jpg", b"shopping list: eggs, milk\n"),
        "good2": put(
            local_stack, f"incoming/oil/{unique_id}/good2.png", (SAMPLES / "coffee.png").read_bytes()
        ),
    }
    got = {name: wait_states(local_stack, image_id, ("oil",))["oil"] for name, image_id in ids.items()}
    assert got["good"]["state"] == "done" and got["good2"]["state"] == "done"
    assert (got["corrupt"]["state"], got["corrupt"]["reason"]) == ("rejected", "corrupt")
    assert (got["oversized"]["state"], got["oversized"]["reason"]) == ("rejected", "too_large_bytes")
    assert (got["text"]["state"], got["text"]["reason"]) == ("rejected", "unsupported_format")
    assert "40 MiB" in got["oversized"]["message"] and "text" in got["text"]["message"]
    assert renders(local_stack, ids["corrupt"]) == [] and renders(local_stack, ids["oversized"]) == []


def test_an_object_under_renders_triggers_nothing(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str
) -> None:
    local_stack.s3.put_object(Bucket=local_stack.bucket, Key=f"renders/{unique_id}/sketch.jpg", Body=b"x")
    control = f"incoming/sketch/{unique_id}/control.jpg"
    put(local_stack, control, (SAMPLES / "chelsea.jpg").read_bytes())
    assert dispatcher.wait_idle(timeout=60)
    touched = [i.key for i in dispatcher.invocations() if i.key and unique_id in i.key]
    assert touched == [control]  # the control upload was seen, the render was not


@pytest.mark.parametrize("name", ["red flower.jpg", "a+b=c.jpg", "café à Paris ünï.jpg", "日本の猫.jpg"])
def test_keys_with_spaces_plus_and_non_ascii_render(
    local_stack: LocalStack, unique_id: str, name: str
) -> None:
    key = f"incoming/sketch/{unique_id}/{name}"
    image_id = put(local_stack, key, (SAMPLES / "chelsea.jpg").read_bytes())
    item = wait_states(local_stack, image_id, ("sketch",))["sketch"]
    assert item["state"] == "done" and item["source_key"] == key


def test_transient_failure_is_retried_then_reaches_the_dead_letter_queue(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = S3ObjectStore.put
    failures = {f"once{unique_id}": 1, f"always{unique_id}": 99}  # render writes that fail, per image
    counts: dict[str, int] = {}

    def flaky(self: S3ObjectStore, key: str, *args: Any, **kwargs: Any) -> None:
        for marker, limit in failures.items():
            if key.startswith("renders/") and marker in key:
                counts[marker] = counts.get(marker, 0) + 1
                if counts[marker] <= limit:
                    raise TransientStoreError(f"PutObject {key}: SlowDown")
        return original(self, key, *args, **kwargs)

    monkeypatch.setattr(S3ObjectStore, "put", flaky)
    # a failure that clears: Lambda's retry renders it
    first = put(local_stack, f"incoming/pencil/once{unique_id}.jpg", own_photo(f"once{unique_id}"))
    assert wait_states(local_stack, first, ("pencil",))["pencil"]["state"] in ("done", "failed")
    assert dispatcher.wait_idle(timeout=60)
    assert wait_states(local_stack, first, ("pencil",))["pencil"]["state"] == "done"
    retried = [i for i in dispatcher.invocations("PencilFunction") if i.key and f"once{unique_id}" in i.key]
    assert [i.attempts for i in retried] == [2] and retried[0].outcome == "success"
    # one that persists: three attempts (the template's MaximumRetryAttempts 2), then the dead-letter queue
    key = f"incoming/pencil/always{unique_id}.jpg"
    image_id = put(local_stack, key, own_photo(f"always{unique_id}"))
    assert dispatcher.wait_idle(timeout=60)
    failed = [i for i in dispatcher.invocations("PencilFunction") if i.key and f"always{unique_id}" in i.key]
    assert [i.attempts for i in failed] == [3]
    item = status(local_stack, image_id)["pencil"]
    assert item["state"] == "failed" and "SlowDown" in item["message"]
    dlq = local_stack.queue_urls["RenderDeadLetterQueue"]
    messages = local_stack.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    records = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    mine = [r for r in records if f"always{unique_id}" in r["requestPayload"]["detail"]["object"]["key"]]
    assert len(mine) == 1 and mine[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert mine[0]["responsePayload"]["errorType"] == "TransientStoreError"


def test_sample_events_run_every_handler_against_the_local_stack(
    local_stack: LocalStack, dispatcher: Dispatcher
) -> None:
    from urllib.parse import unquote_plus

    for style in ("sketch", "pencil", "oil", "watercolor"):
        photo = PHOTO_OF[f"{style}.json"]
        event = json.loads((EVENTS / f"{style}.json").read_text())
        key = unquote_plus(event["detail"]["object"]["key"])
        etag = local_stack.s3.put_object(
            Bucket=local_stack.bucket, Key=key, Body=(SAMPLES / photo).read_bytes()
        )
        assert etag["ETag"].strip('"') == event["detail"]["object"]["etag"]  # the file's ETag is the photo's
        event["detail"]["bucket"]["name"] = local_stack.bucket
        assert dispatcher.targets(event) == [f"{style.capitalize()}Function"]
        (invocation,) = dispatcher.emit(event)
        assert invocation.done.wait(60)
        assert invocation.result["state"] == "done", invocation
        assert invocation.result["source_key"] == key


def test_anime_upload_renders_with_the_dev_model_at_the_input_size(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str
) -> None:
    key = f"incoming/anime/{unique_id}/portrait.png"
    image_id = put(local_stack, key, (SAMPLES / "coffee.png").read_bytes())
    item = wait_states(local_stack, image_id, ("anime",))["anime"]
    assert item["state"] == "done" and item["output_key"] == f"renders/{image_id}/anime.png"
    assert (item["width"], item["height"]) == (600, 400)  # aspect kept, no square crop
    assert item["style_fingerprint"].startswith("anime:animeganv2-dev:")
    assert (item["model"], item["trained"]) == ("animeganv2-dev", False)  # clients label such output
    invoked = {i.function for i in dispatcher.invocations() if i.key and unique_id in i.key}
    assert invoked == {"AnimeFunction"}


def test_anime_model_variant_is_chosen_by_sub_folder(local_stack: LocalStack, unique_id: str) -> None:
    key = f"incoming/anime/animeganv2-dev-nhwc/{unique_id}/cat.jpg"
    models = Path(local_stack.env["ATELIER_MODEL_DIR"])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "atelier_dev.models.cli",
            "--cache",
            str(models),
            "build-dev",
            "--only",
            "animeganv2-dev-nhwc",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    image_id = put(local_stack, key, own_photo(f"anime{unique_id}"))
    item = wait_states(local_stack, image_id, ("anime",))["anime"]
    assert item["state"] == "done" and item["style_fingerprint"].startswith("anime:animeganv2-dev-nhwc:")


def test_a_near_duplicate_is_copied_with_its_content_type_and_size(
    local_stack: LocalStack, unique_id: str
) -> None:
    import cv2
    import numpy as np

    original = own_photo(unique_id)
    first_id = put(local_stack, f"incoming/sketch/{unique_id}/first.jpg", original)
    first = wait_states(local_stack, first_id, ("sketch",))["sketch"]
    img = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
    ok, variant = cv2.imencode(
        ".jpg",
        cv2.resize(img, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA),
        [cv2.IMWRITE_JPEG_QUALITY, 75],
    )
    assert ok
    second_id = put(local_stack, f"incoming/sketch/{unique_id}/second.jpg", variant.tobytes())
    second = wait_states(local_stack, second_id, ("sketch",))["sketch"]
    assert second["state"] == "done" and second["cache"]["hit"] is True
    assert second["cache"]["source_image_id"] == first_id
    head = local_stack.s3.head_object(Bucket=local_stack.bucket, Key=second["output_key"])
    assert head["ContentType"] == "image/jpeg" and head["Metadata"]["image-id"] == second_id
    assert (second["width"], second["height"]) == (first["width"], first["height"])
    assert second["size_bytes"] == first["size_bytes"] == head["ContentLength"]
