"""Uploads: request checks, keys and POST policy conditions, without AWS."""

from __future__ import annotations

from typing import Any

import pytest

from atelier.domain import keys, uploads
from atelier.domain.limits import Limits
from atelier.domain.uploads import UploadRefused
from atelier.imaging.styles import CPU_STYLES

LIMITS = Limits()
GOOD = {
    "filename": "red flower.jpg",
    "content_type": "image/jpeg",
    "size": 123_456,
    "styles": ["sketch", "oil"],
}


def refusal(body: Any, accepted: tuple[str, ...] = CPU_STYLES, limits: Limits = LIMITS) -> UploadRefused:
    with pytest.raises(UploadRefused) as info:
        uploads.parse_request(body, accepted, limits)
    return info.value


# --- request checks -----------------------------------------------------------------------------------


def test_a_valid_request_is_read_with_its_file_name_sanitised() -> None:
    request = uploads.parse_request({**GOOD, "filename": "a/b/red  flower?.JPG"}, CPU_STYLES, LIMITS)
    assert request.filename == "red flower_.JPG"
    assert request.content_type == "image/jpeg" and request.size == 123_456
    assert request.styles == ("sketch", "oil")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("café.jpg", "café.jpg"),
        ("e\u0301te\u0301.webp", "\u00e9t\u00e9.webp"),  # NFC
        ("a<b>|c*.jpg", "a_b__c_.jpg"),
        ("  spaced   out .jpg ", "spaced out .jpg"),
    ],
)
def test_file_names_keep_their_last_part_and_harmless_characters(name: str, expected: str) -> None:
    assert uploads.sanitize_filename(name) == expected


def test_a_long_file_name_is_cut_keeping_its_extension() -> None:
    safe = uploads.sanitize_filename("x" * 200 + ".jpeg")
    assert len(safe) == uploads.KEY_FILENAME_CHARS and safe.endswith(".jpeg")


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 256 + ".jpg", "evil\x00.jpg", "line\nbreak.jpg", "...", "/", "??"]
)
def test_empty_or_absurd_file_names_are_refused(name: str) -> None:
    error = refusal({**GOOD, "filename": name})
    assert error.code == "bad_filename" and error.field == "filename" and error.status == 400


def test_a_size_over_the_byte_cap_is_refused_naming_the_cap() -> None:
    error = refusal({**GOOD, "size": 2049}, limits=Limits(max_bytes=2048))
    assert error.code == "too_large_bytes" and error.field == "size"
    assert "2 KiB" in error.message
    assert uploads.parse_request({**GOOD, "size": 2048}, CPU_STYLES, Limits(max_bytes=2048)).size == 2048


@pytest.mark.parametrize("size", [0, -1, True, "12", 1.5, None])
def test_a_size_that_is_not_a_positive_integer_is_refused(size: Any) -> None:
    error = refusal({**GOOD, "size": size})
    assert error.code == "invalid_request" and error.field == "size"


@pytest.mark.parametrize("content_type", ["text/html", "image/gif", "image/svg+xml", "", None])
def test_content_types_other_than_jpeg_png_webp_are_refused(content_type: Any) -> None:
    error = refusal({**GOOD, "content_type": content_type})
    assert error.code == "unsupported_type" and "image/jpeg" in error.message


def test_an_unknown_style_is_refused_listing_the_known_ones() -> None:
    error = refusal({**GOOD, "styles": ["sketch", "cubism"]})
    assert error.code == "unknown_style" and "'cubism'" in error.message
    assert all(name in error.message for name in CPU_STYLES)


def test_anime_and_upscale_are_accepted_only_where_the_accepted_styles_list_them() -> None:
    assert refusal({**GOOD, "styles": ["anime"]}).code == "unknown_style"
    request = uploads.parse_request(
        {**GOOD, "styles": ["anime"], "options": {"anime": {"model": "animeganv2_hayao"}}},
        (*CPU_STYLES, "anime"),
        LIMITS,
    )
    assert request.styles == ("anime",) and request.options == {"anime": {"model": "animeganv2_hayao"}}


@pytest.mark.parametrize(
    "options",
    [{"sketch": {"model": "hayao"}}, {"anime": {"model": "hayao"}}, {"sketch": 3}, "x", None],
)
def test_options_must_belong_to_a_requested_style_that_takes_them(options: Any) -> None:
    error = refusal({**GOOD, "options": options})
    assert error.code in ("invalid_option", "invalid_request") and error.field == "options"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], None),
        ({k: v for k, v in GOOD.items() if k != "styles"}, "styles"),
        ({**GOOD, "styles": []}, "styles"),
        ({**GOOD, "styles": "sketch"}, "styles"),
        ({**GOOD, "styles": ["oil", "oil"]}, "styles"),
        ({**GOOD, "owner": "someone-else"}, "owner"),
        ({**GOOD, "filename": 7}, "filename"),
    ],
)
def test_malformed_requests_are_refused_saying_which_field(body: Any, field: str | None) -> None:
    error = refusal(body)
    assert error.code == "invalid_request" and error.field == field
    assert error.body()["error"]["message"]


# --- identity, keys and the policy ----------------------------------------------------------------------


def test_the_owner_is_the_subject_or_a_digest_of_an_odd_one() -> None:
    assert uploads.owner_id("9f1c2e7a-0d1b-4c55-8f0e-1b2c3d4e5f60") == "9f1c2e7a-0d1b-4c55-8f0e-1b2c3d4e5f60"
    odd = uploads.owner_id("auth0|12345/../x")
    assert odd == uploads.owner_id("auth0|12345/../x") and keys.is_owner_id(odd) and "/" not in odd
    with pytest.raises(UploadRefused) as info:
        uploads.owner_id("")
    assert info.value.status == 401


def test_the_plan_pins_size_type_metadata_and_a_server_chosen_key() -> None:
    request = uploads.parse_request(GOOD, CPU_STYLES, LIMITS)
    plan = uploads.plan_upload(request, "dev-user", LIMITS, 600)
    assert keys.is_image_id(plan.image_id) and len(plan.image_id) >= 20
    assert plan.key == f"incoming/all/u/dev-user/{plan.image_id}/red flower.jpg"
    assert ["content-length-range", GOOD["size"], GOOD["size"]] in plan.conditions
    assert ["starts-with", "$Content-Type", "image/"] in plan.conditions
    pinned = {k: v for c in plan.conditions if isinstance(c, dict) for k, v in c.items()}
    assert pinned == {
        "x-amz-meta-image-id": plan.image_id,
        "x-amz-meta-owner": "dev-user",
        "x-amz-meta-styles": "sketch,oil",
    }
    assert {k: plan.fields[k] for k in pinned} == pinned and plan.fields["Content-Type"] == "image/jpeg"
    assert uploads.plan_upload(request, "dev-user", LIMITS, 600).image_id != plan.image_id


def test_the_policy_pins_the_length_to_the_declared_size_not_the_cap() -> None:
    request = uploads.parse_request({**GOOD, "size": 38_702}, CPU_STYLES, LIMITS)
    plan = uploads.plan_upload(request, "dev-user", LIMITS, 600)
    ranges = [c for c in plan.conditions if isinstance(c, list) and c[0] == "content-length-range"]
    assert ranges == [["content-length-range", 38_702, 38_702]]
    assert plan.max_bytes == LIMITS.max_bytes  # the grant still reports the deployment's cap
    with pytest.raises(ValueError, match="declared size"):  # an unchecked request cannot widen the cap
        too_big = uploads.UploadRequest("a.jpg", "image/jpeg", 4097, ("sketch",))
        uploads.plan_upload(too_big, "u", Limits(max_bytes=4096), 60)


def test_the_style_handlers_read_back_what_the_policy_pins() -> None:
    plan = uploads.plan_upload(uploads.parse_request(GOOD, CPU_STYLES, LIMITS), "u-1", LIMITS, 600)
    metadata = {
        k.removeprefix("x-amz-meta-"): v for k, v in plan.fields.items() if k.startswith("x-amz-meta-")
    }
    described = keys.describe(plan.key, "etag", metadata, CPU_STYLES)
    assert (described.image_id, described.owner) == (plan.image_id, "u-1")
    assert described.styles == frozenset({"sketch", "oil"}) and described.filename == "red flower.jpg"


def test_the_image_record_holds_who_uploaded_what_and_the_options() -> None:
    body = {**GOOD, "options": {"oil": {"strength": 0.3}}}
    plan = uploads.plan_upload(uploads.parse_request(body, CPU_STYLES, LIMITS), "u-1", LIMITS, 600)
    image = uploads.image_record(plan)
    assert (image["owner"], image["styles"], image["filename"]) == (
        "u-1",
        ["sketch", "oil"],
        "red flower.jpg",
    )
    assert image["source_key"] == plan.key and image["declared_bytes"] == GOOD["size"]
    assert image["options"] == {"oil": {"strength": 0.3}}
