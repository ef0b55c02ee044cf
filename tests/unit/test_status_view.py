"""The status model without a store: a job past its deadline, the API's view, and the API document."""

from __future__ import annotations

from typing import Any

from atelier.domain import status
from atelier.domain.status import IMAGE_RECORD

IMAGE = "img-123456"


def test_rendering_past_its_deadline_is_reported_failed_timed_out() -> None:
    left = {"state": "rendering", "deadline_at": 1060}
    assert status.effective(left, 1060)["state"] == "rendering"
    late = status.effective(left, 1061)
    assert (late["state"], late["reason"]) == ("failed", "timed_out") and "retried" in late["message"]
    assert status.effective({"state": "done", "deadline_at": 10}, 1061)["state"] == "done"


def _image(owner: str = "u-1", **extra: Any) -> dict[str, Any]:
    record = {"style": IMAGE_RECORD, "owner": owner, "styles": ["sketch", "oil"], "filename": "cat.png"}
    return {**record, "created_at": 1000, "upload_expires_at": 1600, **extra}


def test_the_view_hides_unknown_and_other_owners_images() -> None:
    assert status.view(IMAGE, [], "u-1", 1100) is None
    assert status.view(IMAGE, [_image(owner="u-2")], "u-1", 1100) is None
    assert status.view(IMAGE, [{"style": "sketch", "state": "done"}], "u-1", 1100) is None


def test_the_view_follows_the_upload_from_waiting_to_complete() -> None:
    pending = {"state": "pending"}
    view = status.view(IMAGE, [_image(), {"style": "sketch", **pending}], "u-1", 1100)
    assert view is not None and view["state"] == "awaiting_upload"
    assert [s["state"] for s in view["styles"]] == ["pending", "pending"]
    assert view["created_at"] == "1970-01-01T00:16:40Z"
    expired = status.view(IMAGE, [_image()], "u-1", 1601)
    assert expired is not None and expired["state"] == "upload_expired"
    started = {"style": "sketch", "state": "rendering", "started_at": 1090, "deadline_at": 1150}
    shown = status.view(IMAGE, [_image(), started], "u-1", 1100)
    assert shown is not None and shown["state"] == "processing"
    assert shown["styles"][0] == {
        "style": "sketch",
        "state": "rendering",
        "started_at": "1970-01-01T00:18:10Z",
    }
    done = {"style": "sketch", "state": "done", "output_key": f"renders/{IMAGE}/sketch.png", "format": "png"}
    rejected = {"style": "oil", "state": "rejected", "reason": "corrupt", "message": "the PNG has no IHDR"}
    view = status.view(IMAGE, [_image(), done, rejected], "u-1", 1100)
    assert view is not None and view["state"] == "complete"
    sketch, oil = view["styles"]
    assert sketch["download_name"] == "cat-sketch.png" and sketch["output_key"] == done["output_key"]
    assert oil == {"style": "oil", "state": "rejected", "reason": "corrupt", "message": "the PNG has no IHDR"}


def test_the_view_ends_a_job_whose_handler_died_and_labels_an_untrained_model() -> None:
    dead = {"style": "sketch", "state": "rendering", "started_at": 1000, "deadline_at": 1060}
    anime = {
        "style": "oil",
        "state": "done",
        "model": "animeganv2-dev",
        "trained": False,
        "output_key": "r/o.png",
    }
    view = status.view(IMAGE, [_image(), dead, anime], "u-1", 1100)
    assert view is not None and view["state"] == "complete"  # every job has ended: none stays rendering
    sketch, oil = view["styles"]
    assert (sketch["state"], sketch["reason"]) == ("failed", "timed_out")
    assert (oil["model"], oil["trained"]) == ("animeganv2-dev", False)


def test_the_api_document_names_every_state_and_failure_reason() -> None:
    from pathlib import Path

    import yaml

    from atelier.domain.errors import REASONS

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "api" / "openapi.yaml").read_text())
    style_status = spec["components"]["schemas"]["StyleStatus"]["properties"]
    assert style_status["state"]["enum"] == list(status.STATES)
    for reason in (*status.FAILURE_REASONS, *REASONS):
        assert reason in style_status["reason"]["description"]
