"""Presigned uploads against SeaweedFS, which enforces POST policies: caps, type, pinned metadata, time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from atelier.config import AppConfig
from atelier.domain import uploads
from atelier.domain.limits import Limits
from atelier.domain.uploads import UploadSettings
from atelier.entrypoints import wiring
from atelier.entrypoints.api import api_handler, presigned_post
from atelier_dev.local.api_server import dev_claims, http_api_event
from atelier_dev.local.dispatcher import Dispatcher
from atelier_dev.local.stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = (ROOT / "samples" / "chelsea.jpg").read_bytes()
SMALL_CAP = 4096
AUTH = {"Authorization": "Bearer local-dev"}


def api_config(stack: LocalStack, limits: Limits) -> AppConfig:
    """The API function's configuration on the local stack, with the given input caps."""
    env = stack.function_env("ApiFunction")
    tables = env["ATELIER_STATUS_TABLE"], env["ATELIER_IDEMPOTENCY_TABLE"]
    return AppConfig(env["ATELIER_BUCKET"], *tables, limits)


def small_cap_grant(stack: LocalStack) -> dict[str, Any]:
    """A POST /uploads answered by the API handler built with a byte cap of 4 KiB."""
    config = api_config(stack, Limits(max_bytes=SMALL_CAP))
    handler = api_handler(wiring.build(config), settings=UploadSettings())
    body = {"filename": "tiny.jpg", "content_type": "image/jpeg", "size": SMALL_CAP, "styles": ["sketch"]}
    event = http_api_event(
        "POST",
        "/uploads",
        "",
        {"content-type": "application/json"},
        json.dumps(body).encode(),
        claims=dev_claims("cap-tester", "https://issuer.example"),
        route_key="POST /uploads",
        domain="local",
    )
    context: Any = _Context()
    response = handler(event, context)
    assert response["statusCode"] == 201, response["body"]
    granted: dict[str, Any] = json.loads(response["body"])
    return granted


class _Context:
    function_name = "ApiFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:ApiFunction"
    memory_limit_in_mb = 512
    aws_request_id = "integration"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def post_file(grant: dict[str, Any], body: bytes, **overrides: str) -> requests.Response:
    """Post ``body`` with the grant's form fields (some replaced) as a browser form would."""
    fields = {**grant["upload"]["fields"], **overrides}
    content_type = fields.get("Content-Type", "application/octet-stream")
    return requests.post(
        grant["upload"]["url"], data=fields, files={"file": ("photo", body, content_type)}, timeout=30
    )


def error_code(response: requests.Response) -> str:
    """The <Code> of an S3 XML error."""
    start, end = response.text.find("<Code>"), response.text.find("</Code>")
    return response.text[start + 6 : end] if start >= 0 else ""


def ask(api_url: str, **body: Any) -> dict[str, Any]:
    """POST /uploads through the local API server; assert it granted the upload."""
    response = requests.post(f"{api_url}/uploads", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    granted: dict[str, Any] = response.json()
    return granted


def exists(stack: LocalStack, key: str) -> bool:
    listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)
    return any(o["Key"] == key for o in listed.get("Contents", []))


def test_one_byte_over_the_cap_is_entity_too_large_and_the_cap_itself_lands(
    local_stack: LocalStack, dispatcher: Dispatcher
) -> None:
    over = small_cap_grant(local_stack)
    response = post_file(over, b"\xff" * (SMALL_CAP + 1))
    assert response.status_code == 400 and error_code(response) == "EntityTooLarge"
    assert not exists(local_stack, over["key"])
    at_cap = small_cap_grant(local_stack)
    assert post_file(at_cap, b"\xff" * SMALL_CAP).status_code == 204
    assert exists(local_stack, at_cap["key"])


def test_the_upload_must_be_the_declared_size_even_under_the_cap(
    api_url: str, local_stack: LocalStack, dispatcher: Dispatcher
) -> None:
    declared = 38_702
    grant = ask(api_url, filename="small.jpg", content_type="image/jpeg", size=declared, styles=["sketch"])
    for size, code in (
        (1_300_000, "EntityTooLarge"),
        (declared + 1, "EntityTooLarge"),
        (declared - 1, "EntityTooSmall"),
    ):
        response = post_file(grant, b"\xff" * size)
        assert response.status_code == 400 and error_code(response) == code, (size, response.text)
        assert not exists(local_stack, grant["key"])
    assert post_file(grant, b"\xff" * declared).status_code == 204
    assert exists(local_stack, grant["key"])


def test_a_text_html_upload_is_refused(api_url: str, local_stack: LocalStack) -> None:
    page = b"<html><script>alert(1)</script></html>"
    grant = ask(api_url, filename="page.jpg", content_type="image/jpeg", size=len(page), styles=["sketch"])
    response = post_file(grant, page, **{"Content-Type": "text/html"})
    assert response.status_code == 403 and error_code(response) == "AccessDenied"
    assert not exists(local_stack, grant["key"])
    refused = requests.post(
        f"{api_url}/uploads",
        json={"filename": "page.html", "content_type": "text/html", "size": 100, "styles": ["sketch"]},
        headers=AUTH,
        timeout=30,
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_type"


def test_the_pinned_metadata_cannot_be_changed(api_url: str, local_stack: LocalStack) -> None:
    grant = ask(api_url, filename="a.jpg", content_type="image/jpeg", size=len(CHELSEA), styles=["sketch"])
    for name, value in (("x-amz-meta-styles", "sketch,oil,pencil"), ("x-amz-meta-owner", "someone-else")):
        response = post_file(grant, CHELSEA, **{name: value})
        assert response.status_code == 403, (name, response.text)
    assert not exists(local_stack, grant["key"])


def test_an_expired_policy_is_refused(local_stack: LocalStack) -> None:
    request = uploads.parse_request(
        {"filename": "late.jpg", "content_type": "image/jpeg", "size": len(CHELSEA), "styles": ["sketch"]},
        ("sketch",),
        Limits(),
    )
    plan = uploads.plan_upload(request, "late-user", Limits(), expires_in=-60)
    presigner = wiring.build(api_config(local_stack, Limits())).presigner
    signed = presigned_post(presigner, local_stack.bucket, plan)
    response = requests.post(
        signed["url"], data=signed["fields"], files={"file": ("late.jpg", CHELSEA, "image/jpeg")}, timeout=30
    )
    assert response.status_code == 403 and "expired" in response.text.lower()
    assert not exists(local_stack, plan.key)


def test_a_valid_upload_lands_and_renders_the_requested_styles_only(
    api_url: str, local_stack: LocalStack, dispatcher: Dispatcher
) -> None:
    grant = ask(
        api_url,
        filename="chelsea.jpg",
        content_type="image/jpeg",
        size=len(CHELSEA),
        styles=["sketch", "oil"],
    )
    status_url = f"{api_url}{grant['status_url']}"
    assert requests.get(status_url, headers=AUTH, timeout=30).json()["state"] == "awaiting_upload"
    assert post_file(grant, CHELSEA).status_code == 204
    head = local_stack.s3.head_object(Bucket=local_stack.bucket, Key=grant["key"])
    assert head["Metadata"] == {"image-id": grant["image_id"], "owner": "dev-user", "styles": "sketch,oil"}
    assert dispatcher.wait_idle(timeout=60)
    view = requests.get(status_url, headers=AUTH, timeout=30).json()
    deadline = time.monotonic() + 30
    while view["state"] != "complete" and time.monotonic() < deadline:
        time.sleep(0.2)
        view = requests.get(status_url, headers=AUTH, timeout=30).json()
    assert view["state"] == "complete"
    assert [(s["style"], s["state"]) for s in view["styles"]] == [("sketch", "done"), ("oil", "done")]
    for entry in view["styles"]:
        image = requests.get(entry["url"], timeout=30)
        assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
        download = requests.get(entry["download_url"], timeout=30)
        assert download.headers["Content-Disposition"].startswith("attachment;")
        assert f'filename="chelsea-{entry["style"]}.jpg"' in download.headers["Content-Disposition"]
    listed = local_stack.s3.list_objects_v2(Bucket=local_stack.bucket, Prefix=f"renders/{grant['image_id']}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"renders/{grant['image_id']}/oil.jpg",
        f"renders/{grant['image_id']}/sketch.jpg",
    ]
    other = requests.get(status_url, headers={**AUTH, "X-Atelier-Dev-User": "someone-else"}, timeout=30)
    assert other.status_code == 404
