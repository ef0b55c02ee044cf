"""An upscale asked for through the API: the GPU worker's status item is the one the API's view reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain.uploads import UploadSettings
from atelier.entrypoints import wiring
from atelier.entrypoints.api import api_handler
from atelier.entrypoints.gpu_worker import build_job
from tests.aws import MotoAws, call_api
from tests.fakes import FakeModels

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    moto: MotoAws
    app: wiring.Adapters
    handler: Any

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return call_api(self.handler, method, path, body, sub="alice")


@pytest.fixture
def stack(moto_aws: MotoAws) -> Stack:
    app = wiring.build(moto_aws.config())
    return Stack(moto_aws, app, api_handler(app, settings=UploadSettings(5, 2)))


def small_png() -> bytes:
    img = cv2.imread(str(ROOT / "samples" / "chelsea.jpg"))
    ok, buf = cv2.imencode(".png", cv2.resize(img, (24, 16), interpolation=cv2.INTER_AREA))
    assert ok
    return buf.tobytes()


def post_upload(stack: Stack, body: bytes, factor: int) -> tuple[str, str, str]:
    """Ask for an upload with the upscale and put the object as the browser's POST would: id, key, ETag."""
    request = {
        "filename": "cat.png",
        "content_type": "image/png",
        "size": len(body),
        "styles": ["sketch", "upscale"],
        "options": {"upscale": {"factor": factor}},
    }
    status, granted = stack.call("POST", "/uploads", request)
    assert status == 201, granted
    fields = granted["upload"]["fields"]
    metadata = {k.removeprefix("x-amz-meta-"): v for k, v in fields.items() if k.startswith("x-amz-meta-")}
    put = stack.moto.s3.put_object(
        Bucket=stack.moto.bucket, Key=granted["key"], Body=body, ContentType="image/png", Metadata=metadata
    )
    return granted["image_id"], granted["key"], put["ETag"].strip('"')


@pytest.mark.parametrize("factor", [2, 3])
def test_the_workers_status_is_the_one_the_api_shows(stack: Stack, factor: int) -> None:
    body = small_png()
    image_id, key, etag = post_upload(stack, body, factor)
    _, before = stack.call("GET", f"/images/{image_id}")
    pending = [(s["style"], s["state"]) for s in before["styles"]]
    assert pending == [("sketch", "pending"), ("upscale", "pending")]
    run = build_job(stack.app, FakeModels())  # type: ignore[arg-type]
    result = run({"detail": {"object": {"key": key, "etag": etag}}})
    assert result["state"] == "done" and result["style"] == "upscale" and result["factor"] == factor
    items = {
        i["style"]: i
        for i in DynamoStatusStore(stack.app.dynamodb, stack.app.config.status_table).get_status(image_id)
    }
    assert set(items) == {"#image", "sketch", "upscale"}  # one item per requested style, no other
    upscale = items["upscale"]
    assert upscale["state"] == "done" and upscale["factor"] == factor
    assert upscale["output_key"] == f"renders/{image_id}/upscale-x{factor}.png"  # the file keeps its name
    assert (upscale["width"], upscale["height"]) == (24 * factor, 16 * factor)
    _, after = stack.call("GET", f"/images/{image_id}")
    shown = {s["style"]: s for s in after["styles"]}
    assert shown["upscale"]["state"] == "done" and shown["sketch"]["state"] == "pending"
    assert (shown["upscale"]["width"], shown["upscale"]["height"]) == (24 * factor, 16 * factor)
    assert shown["upscale"]["download_name"] == "cat-upscale.png" and "url" in shown["upscale"]
    assert after["state"] == "processing"  # the sketch is still to come
    again = run({"detail": {"object": {"key": key, "etag": etag}}})
    assert (again["state"], again["message"]) == ("skipped", "already finished")  # a duplicate message
