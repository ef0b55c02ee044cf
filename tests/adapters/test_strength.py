"""The CPU styles' ``strength`` option end to end: the CLI flag, the API's options, the object's metadata,
the handler, the near-duplicate cache and the idempotency key.

The styles' renders are swapped for one that records the strength it got and returns the photo, so these
tests say nothing about (and do not depend on) what a style looks like.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from atelier import pipeline
from atelier.domain import keys, options, status, uploads
from atelier.domain.errors import JobFailed
from atelier.domain.limits import Limits
from atelier.domain.uploads import UploadRefused
from atelier.entrypoints import wiring
from atelier.entrypoints.lambda_style import style_handler
from atelier.imaging import styles
from atelier_dev import cli
from tests.conftest import MotoAws, lambda_context

ROOT = Path(__file__).resolve().parents[2]
PHOTO = (ROOT / "samples" / "chelsea.jpg").read_bytes()
GOOD = {"filename": "cat.jpg", "content_type": "image/jpeg", "size": 1000, "styles": ["sketch", "oil"]}


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Every CPU style renders by recording its strength and handing the photo back."""
    got: dict[str, list[float]] = {name: [] for name in styles.CPU_STYLES}
    for name in styles.CPU_STYLES:
        style = styles.STYLES[name]

        def render(bgr: np.ndarray, _name: str = name, **params: Any) -> np.ndarray:
            got[_name].append(params["strength"])
            return bgr.copy()

        monkeypatch.setitem(styles.STYLES, name, dataclasses.replace(style, render_fn=render))
    return got


def ctx(function: str = "SketchFunction") -> Any:
    return lambda_context(function)


def default(name: str) -> float:
    return float(styles.get(name).defaults["strength"])


# --- the CLI ---------------------------------------------------------------------------------------------


def test_stylize_renders_each_cpu_style_at_the_strength_given(
    tmp_path: Path, seen: dict[str, list[float]]
) -> None:
    photo = str(ROOT / "samples" / "chelsea.jpg")
    assert cli.main(["stylize", photo, "-s", "sketch,oil", "--strength", "0.7", "-o", str(tmp_path)]) == 0
    assert seen["sketch"] == [0.7] and seen["oil"] == [0.7] and seen["pencil"] == []
    assert cli.main(["stylize", photo, "-s", "pencil", "-o", str(tmp_path)]) == 0
    assert seen["pencil"] == [default("pencil")]
    assert cli.main(["stylize", photo, "-s", "pencil", "--strength", "1", "-o", str(tmp_path)]) == 0
    assert seen["pencil"][-1] == 1.0


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "strong", "inf"])
def test_stylize_refuses_a_strength_outside_0_to_1(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = str(ROOT / "samples" / "chelsea.jpg")
    with pytest.raises(SystemExit) as info:
        cli.main(["stylize", photo, "--strength", value, "-o", str(tmp_path)])
    assert info.value.code == 2
    assert "--strength must be a number from 0 to 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# --- the upload API's options ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 0.7, 1, 1.0])
def test_the_api_takes_a_strength_from_0_to_1_for_each_cpu_style(value: float) -> None:
    for name in styles.CPU_STYLES:
        body = {**GOOD, "styles": [name], "options": {name: {"strength": value}}}
        request = uploads.parse_request(body, styles.CPU_STYLES, Limits())
        assert request.options == {name: {"strength": float(value)}}
    plan = uploads.plan_upload(request, "u-1", Limits(), 600)
    pinned = {k: v for c in plan.conditions if isinstance(c, dict) for k, v in c.items()}
    assert json.loads(pinned["x-amz-meta-options"]) == {"watercolor": {"strength": float(value)}}


@pytest.mark.parametrize("value", [-0.01, 1.01, 5, True, False, "0.5", None, [0.5], {"v": 1}, math.nan])
def test_the_api_refuses_a_strength_that_is_not_a_number_from_0_to_1(value: Any) -> None:
    with pytest.raises(UploadRefused) as info:
        uploads.parse_request({**GOOD, "options": {"oil": {"strength": value}}}, styles.CPU_STYLES, Limits())
    error = info.value
    assert (error.code, error.field, error.status) == ("invalid_option", "options", 400)
    assert error.message == f"oil.strength must be a number from 0 to 1, not {value!r}"


def test_the_api_names_the_options_a_cpu_style_takes() -> None:
    with pytest.raises(UploadRefused) as info:
        uploads.parse_request({**GOOD, "options": {"sketch": {"model": "x"}}}, styles.CPU_STYLES, Limits())
    assert info.value.message == "style 'sketch' has no option 'model'; it takes strength"


def test_the_contract_documents_the_strength_of_each_cpu_style() -> None:
    doc = yaml.safe_load((ROOT / "api" / "openapi.yaml").read_text())
    schemas = doc["components"]["schemas"]
    given = schemas["UploadRequest"]["properties"]["options"]["properties"]
    assert set(styles.CPU_STYLES) <= set(given)
    for name in styles.CPU_STYLES:
        ref = given[name]["$ref"].rsplit("/", 1)[-1]
        strength = schemas[ref]["properties"]["strength"]
        assert (strength["type"], strength["minimum"], strength["maximum"]) == ("number", 0, 1)
    assert set(given) == set(options.STYLE_OPTIONS)


# --- the job a handler builds from the object's metadata -------------------------------------------------


def test_the_job_fingerprint_follows_the_strength_and_options_win_over_plain_metadata() -> None:
    sketch = styles.get("sketch")
    at = {v: pipeline.style_job(sketch, {"strength": str(v)}).fingerprint for v in (0.3, 0.8)}
    assert (
        at[0.3] == sketch.fingerprint({"strength": 0.3}) != at[0.8] == sketch.fingerprint({"strength": 0.8})
    )
    assert pipeline.style_job(sketch, {}).fingerprint == sketch.fingerprint()
    both = {"Strength": "0.3", "options": json.dumps({"sketch": {"strength": 0.8}, "oil": {"strength": 0.1}})}
    assert pipeline.style_job(sketch, both).fingerprint == at[0.8]
    oil = styles.get("oil")
    assert pipeline.style_job(oil, both).fingerprint == oil.fingerprint({"strength": 0.1})
    only_oil = {"strength": "0.3", "options": json.dumps({"oil": {"strength": 0.1}})}
    assert pipeline.style_job(sketch, only_oil).fingerprint == at[0.3]


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({"strength": "1.5"}, "x-amz-meta-strength must be a number from 0 to 1, not '1.5'"),
        ({"strength": "strong"}, "x-amz-meta-strength must be a number from 0 to 1, not 'strong'"),
        ({"options": '{"sketch": {"strength": -1}}'}, "sketch.strength must be a number from 0 to 1, not -1"),
        ({"options": '{"sketch": {"strength": true}}'}, "sketch.strength must be a number from 0 to 1"),
        ({"options": '{"sketch": {"strength": "0.5"}}'}, "sketch.strength must be a number from 0 to 1"),
        ({"options": '{"sketch": {"depth": 1}}'}, "style 'sketch' has no option 'depth'; it takes strength"),
        ({"options": "{not json"}, "x-amz-meta-options is not JSON"),
        ({"options": "[1]"}, "x-amz-meta-options must be a JSON object keyed by style"),
    ],
)
def test_invalid_options_in_metadata_fail_the_job(metadata: dict[str, str], says: str) -> None:
    with pytest.raises(JobFailed) as failed:
        pipeline.style_job(styles.get("sketch"), metadata)
    assert failed.value.reason == "invalid_option" and says in failed.value.message


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
