"""The status model under moto: its states and the conditional writes that keep an ended job ended."""

from __future__ import annotations

from typing import Any

import pytest

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys, status
from atelier.domain.status import IMAGE_RECORD, Board
from tests.aws import MotoAws

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


def test_a_failure_reason_is_one_of_the_known_ones(board: Board) -> None:
    with pytest.raises(ValueError, match="not a failure reason"):
        board.fail(IMAGE, "sketch", "oops", "?", fields())


def test_a_job_waiting_for_a_retry_ends_too(board: Board) -> None:
    assert board.retrying(IMAGE, "sketch", "SlowDown", fields())
    waiting = item(board)
    assert waiting["deadline_at"] == 1000 + status.PENDING_GRACE_SECONDS
    assert status.effective(waiting, waiting["deadline_at"] + 1)["reason"] == "timed_out"
