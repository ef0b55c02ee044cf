"""The status model: its states, the conditional writes that keep an ended job ended, and the API's view."""

from __future__ import annotations

from typing import Any

import pytest

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys, status
from atelier.domain.status import IMAGE_RECORD, Board
from tests.conftest import MotoAws

IMAGE = "img-123456"
UPLOAD = keys.describe("incoming/sketch/cat.jpg", "etag-1", {}, ("sketch",))


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def board(moto_aws: MotoAws) -> Board:
    return Board(DynamoStatusStore(moto_aws.dynamodb, moto_aws.env["ATELIER_STATUS_TABLE"]), 86400, Clock())


def item(board: Board, style: str = "sketch", image_id: str = IMAGE) -> dict[str, Any]:
    return next(i for i in board.items(image_id) if i["style"] == style)


def fields(etag: str = "etag-1", metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return status.job_fields(UPLOAD, etag, metadata or {})


def test_a_job_goes_rendering_then_done_with_its_times(board: Board) -> None:
    assert board.rendering(IMAGE, "sketch", 1060, fields())
    claimed = item(board)
    assert (claimed["state"], claimed["started_at"], claimed["deadline_at"]) == ("rendering", 1000, 1060)
    assert claimed["expires_at"] == 1000 + 86400 and claimed["job"] == fields()["job"]
    board.finish(IMAGE, "sketch", {**fields(), "state": "done", "output_key": "renders/x/sketch.jpg"})
    assert item(board)["state"] == "done"
    with pytest.raises(ValueError, match="terminal"):
        board.finish(IMAGE, "sketch", {"state": "rendering"})


@pytest.mark.parametrize("ended", ["done", "rejected", "failed"])
def test_an_ended_job_is_neither_claimed_nor_failed_again(board: Board, ended: str) -> None:
    board.finish(IMAGE, "sketch", {**fields(), "state": ended, "reason": "corrupt"})
    assert not board.rendering(IMAGE, "sketch", 1060, fields())  # a duplicate event
    assert not board.fail(IMAGE, "sketch", "retries_exhausted", "late", fields())  # a late marker
    assert not board.retrying(IMAGE, "sketch", "SlowDown", fields())
    assert item(board)["state"] == ended


def test_the_same_object_with_new_options_is_a_new_job(board: Board) -> None:
    board.finish(IMAGE, "sketch", {**fields(metadata={"strength": "0.3"}), "state": "done"})
    assert board.rendering(IMAGE, "sketch", 1060, fields(metadata={"strength": "0.8"}))
    assert item(board)["state"] == "rendering"


def test_a_failure_and_a_retry_wait_say_why(board: Board) -> None:
    board.rendering(IMAGE, "sketch", 1060, fields())
    assert board.retrying(IMAGE, "sketch", "PutObject: SlowDown", fields())
    assert (item(board)["state"], item(board)["last_error"]) == ("pending", "PutObject: SlowDown")
    assert board.fail(IMAGE, "sketch", "retries_exhausted", "SlowDown (after 3 attempts)", fields())
    failed = item(board)
    assert (failed["state"], failed["reason"], failed["message"]) == (
        "failed",
        "retries_exhausted",
        "SlowDown (after 3 attempts)",
    )


def test_a_grant_writes_the_image_and_a_pending_item_per_style(board: Board) -> None:
    board.grant(
        IMAGE, {"owner": "u-1", "styles": ["sketch", "oil"], "filename": "cat.png"}, ["sketch", "oil"], 600
    )
    items = {i["style"]: i for i in board.items(IMAGE)}
    assert set(items) == {IMAGE_RECORD, "sketch", "oil"}
    assert items[IMAGE_RECORD]["created_at"] == 1000 and items[IMAGE_RECORD]["upload_expires_at"] == 1600
    assert items["oil"]["state"] == "pending" and items["oil"]["deadline_at"] > 1600


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


def test_a_failure_reason_is_one_of_the_known_ones(board: Board) -> None:
    with pytest.raises(ValueError, match="not a failure reason"):
        board.fail(IMAGE, "sketch", "oops", "?", fields())


def test_a_job_waiting_for_a_retry_ends_too(board: Board) -> None:
    assert board.retrying(IMAGE, "sketch", "SlowDown", fields())
    waiting = item(board)
    assert waiting["deadline_at"] == 1000 + status.PENDING_GRACE_SECONDS
    assert status.effective(waiting, waiting["deadline_at"] + 1)["reason"] == "timed_out"
