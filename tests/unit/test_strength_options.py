"""The CPU styles' ``strength`` option without AWS: the CLI flag, the API's options and the job a handler
builds from the object's metadata.

The styles' renders are swapped for one that records the strength it got and returns the photo (the
``seen`` fixture of tests/conftest.py), so these tests say nothing about (and do not depend on) what a style
looks like.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from atelier import pipeline
from atelier.domain import options, uploads
from atelier.domain.errors import JobFailed
from atelier.domain.limits import Limits
from atelier.domain.uploads import UploadRefused
from atelier.imaging import styles
from atelier_dev import cli

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"filename": "cat.jpg", "content_type": "image/jpeg", "size": 1000, "styles": ["sketch", "oil"]}


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
