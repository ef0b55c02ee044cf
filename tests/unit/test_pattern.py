"""EventBridge pattern matching: the documented operators, and the template's own style rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atelier_dev.local.cfn import LocalTemplate
from atelier_dev.local.dispatcher import encode_key, object_created_event
from atelier_dev.local.pattern import PatternError, matches

ROOT = Path(__file__).resolve().parents[2]

EVENT: dict[str, Any] = {
    "source": "aws.s3",
    "detail-type": "Object Created",
    "detail": {
        "bucket": {"name": "photos"},
        "object": {"key": "incoming/sketch/a.jpg", "size": 1024, "etag": "abc"},
        "reason": "PutObject",
        "source-ip-address": "10.0.0.7",
        "tags": ["red", "blue"],
        "empty": None,
        "flag": True,
    },
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["aws.s3"]}, True),
        ({"source": ["aws.ec2"]}, False),
        ({"source": ["aws.ec2", "aws.s3"]}, True),  # an array is OR
        ({"source": ["aws.s3"], "detail-type": ["Object Deleted"]}, False),  # keys are AND
        ({"detail": {"bucket": {"name": ["photos"]}}}, True),
        ({"detail": {"bucket": {"name": ["other"]}}}, False),
        ({"detail": {"missing": {"name": ["photos"]}}}, False),
        ({"detail": {"object": {"size": [1024]}}}, True),
        ({"detail": {"object": {"size": [1024.0]}}}, True),
        ({"detail": {"object": {"size": ["1024"]}}}, False),  # strings do not equal numbers
        ({"detail": {"empty": [None]}}, True),
        ({"detail": {"flag": [True]}}, True),
        ({"detail": {"flag": ["true"]}}, False),
        ({"detail": {"tags": ["blue"]}}, True),  # an array in the event matches if any element does
        ({"detail": {"tags": ["green"]}}, False),
        ({"detail": {"object": {"key": [{"prefix": "incoming/"}]}}}, True),
        ({"detail": {"object": {"key": [{"prefix": "renders/"}]}}}, False),
        ({"detail": {"object": {"key": [{"prefix": {"equals-ignore-case": "INCOMING/"}}]}}}, True),
        ({"detail": {"object": {"key": [{"suffix": ".jpg"}]}}}, True),
        ({"detail": {"object": {"key": [{"suffix": ".png"}]}}}, False),
        ({"detail": {"object": {"key": [{"suffix": {"equals-ignore-case": ".JPG"}}]}}}, True),
        ({"detail": {"object": {"size": [{"prefix": "10"}]}}}, False),  # prefix is for strings only
        ({"detail": {"reason": [{"anything-but": "CopyObject"}]}}, True),
        ({"detail": {"reason": [{"anything-but": ["PutObject", "CopyObject"]}]}}, False),
        ({"detail": {"reason": [{"anything-but": {"prefix": "Put"}}]}}, False),
        ({"detail": {"reason": [{"anything-but": {"suffix": "Copy"}}]}}, True),
        ({"detail": {"reason": [{"anything-but": {"equals-ignore-case": ["putobject"]}}]}}, False),
        ({"detail": {"reason": [{"anything-but": {"wildcard": "Put*"}}]}}, False),
        ({"detail": {"object": {"size": [{"anything-but": [1, 2]}]}}}, True),
        ({"detail": {"absent": [{"anything-but": "x"}]}}, False),  # anything-but needs the field
        ({"detail": {"object": {"etag": [{"exists": True}]}}}, True),
        ({"detail": {"object": {"version-id": [{"exists": True}]}}}, False),
        ({"detail": {"object": {"version-id": [{"exists": False}]}}}, True),
        ({"detail": {"object": {"etag": [{"exists": False}]}}}, False),
        ({"detail": {"object": {"key": [{"wildcard": "incoming/*/a.jpg"}]}}}, True),
        ({"detail": {"object": {"key": [{"wildcard": "incoming/*.png"}]}}}, False),
        ({"detail": {"object": {"key": [{"wildcard": "incoming/sketch/a.jpg"}]}}}, True),
        ({"detail": {"object": {"key": [{"wildcard": "incoming\\*"}]}}}, False),  # an escaped star is literal
        ({"detail": {"reason": [{"equals-ignore-case": "putOBJECT"}]}}, True),
        ({"detail": {"reason": [{"equals-ignore-case": "copyobject"}]}}, False),
        ({"detail": {"object": {"size": [{"numeric": [">", 1000]}]}}}, True),
        ({"detail": {"object": {"size": [{"numeric": [">", 0, "<=", 1024]}]}}}, True),
        ({"detail": {"object": {"size": [{"numeric": [">=", 0, "<", 1024]}]}}}, False),
        ({"detail": {"object": {"size": [{"numeric": ["=", 1024]}]}}}, True),
        ({"detail": {"object": {"key": [{"numeric": [">", 0]}]}}}, False),  # numeric is for numbers only
        ({"detail": {"source-ip-address": [{"cidr": "10.0.0.0/24"}]}}, True),
        ({"detail": {"source-ip-address": [{"cidr": "192.168.0.0/16"}]}}, False),
        ({"$or": [{"source": ["aws.ec2"]}, {"detail-type": ["Object Created"]}]}, True),
        ({"$or": [{"source": ["aws.ec2"]}, {"detail-type": ["Object Deleted"]}]}, False),
        ({}, True),
    ],
)
def test_operators(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, EVENT) is expected


def test_a_pattern_object_needs_an_object_in_the_event() -> None:
    assert not matches({"source": {"name": ["aws.s3"]}}, EVENT)


@pytest.mark.parametrize(
    "pattern",
    [
        {"source": "aws.s3"},  # values must be arrays
        {"source": []},
        {"source": [{"prefix": "a", "suffix": "b"}]},
        {"source": [{"nonsense": 1}]},
        {"detail": {"object": {"size": [{"numeric": [">"]}]}}},
        {"detail": {"object": {"size": [{"numeric": ["~", 1]}]}}},
        {"$or": []},
    ],
)
def test_malformed_patterns_are_refused(pattern: dict[str, Any]) -> None:
    with pytest.raises(PatternError):
        matches(pattern, EVENT)


# --- the template's style rules --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> LocalTemplate:
    return LocalTemplate.from_file(ROOT / "template.yaml")


def _reached(project: LocalTemplate, key: str, bucket: str | None = None) -> set[str]:
    event = object_created_event(bucket or project.name_of("PhotoBucket"), key, size=1, etag="e")
    return {
        fn.logical_id for fn in project.functions() for rule in fn.event_rules if matches(rule.pattern, event)
    }


STYLE_FUNCTIONS = {"SketchFunction", "PencilFunction", "OilFunction", "WatercolorFunction"}


def test_incoming_sketch_reaches_the_sketch_function_only(project: LocalTemplate) -> None:
    assert _reached(project, "incoming/sketch/owner/img/photo.jpg") == {"SketchFunction"}


def test_incoming_all_reaches_every_style_function(project: LocalTemplate) -> None:
    assert _reached(project, "incoming/all/owner/img/photo.jpg") >= STYLE_FUNCTIONS


def test_incoming_oil_does_not_reach_the_sketch_function(project: LocalTemplate) -> None:
    reached = _reached(project, "incoming/oil/owner/img/photo.jpg")
    assert "SketchFunction" not in reached
    assert "OilFunction" in reached


@pytest.mark.parametrize("key", ["renders/img/sketch.jpg", "incoming/sketchy/x.jpg", "sketch/incoming/x.jpg"])
def test_renders_and_lookalikes_reach_nothing(project: LocalTemplate, key: str) -> None:
    assert _reached(project, key) == set()


def test_another_bucket_reaches_nothing(project: LocalTemplate) -> None:
    assert _reached(project, "incoming/all/x.jpg", bucket="someone-elses-bucket") == set()


def test_keys_in_events_are_encoded_like_s3() -> None:
    assert encode_key("incoming/all/red flower.jpg") == "incoming/all/red+flower.jpg"
    assert encode_key("incoming/all/a+b.jpg") == "incoming/all/a%2Bb.jpg"
    assert encode_key("incoming/all/café.jpg") == "incoming/all/caf%C3%A9.jpg"
    event = object_created_event("b", "incoming/all/x y.jpg", size=3, etag='"abc"')
    assert event["detail"]["object"] == {
        "key": "incoming/all/x+y.jpg",
        "size": 3,
        "etag": "abc",
        "sequencer": event["detail"]["object"]["sequencer"],
    }
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    versioned = object_created_event("b", "k", size=1, etag="e", version_id="v1")
    assert versioned["detail"]["object"]["version-id"] == "v1"
