"""Failure rules without AWS: the dead-letter marker reads the style from the function's name, and the GPU
worker fails a job it will not retry (an in-memory queue)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atelier.domain.errors import JobFailed
from atelier.entrypoints.deadletter import style_of_function
from atelier.worker import Message, Worker
from tests.fakes import MemoryJobQueue


def test_the_marker_reads_the_style_from_the_function_name() -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:photos-watercolor:$LATEST"
    assert style_of_function(arn, "photos-") == "watercolor"
    with pytest.raises(ValueError, match="not a style function"):
        style_of_function("arn:aws:lambda:eu-west-1:123456789012:function:photos-api", "photos-")


def test_the_worker_fails_a_job_that_can_never_run_at_once_and_one_on_its_last_receive() -> None:
    body = json.dumps({"detail": {"object": {"key": "incoming/upscale/a.jpg", "etag": "e"}}})
    failures: list[tuple[str, str]] = []

    def job(event: dict[str, Any]) -> dict[str, Any]:
        if event.get("broken"):
            raise RuntimeError("CUDA error: device lost")
        raise JobFailed("model_unavailable", "the x3 upscale model is not installed")

    broken = json.dumps({"broken": True})
    queue = MemoryJobQueue(
        Message("m1", "r1", body), Message("m2", "r2", broken, 2), Message("m3", "r3", broken, 3)
    )
    worker = Worker(queue, job, max_receives=3, on_failure=lambda b, r, m: failures.append((r, m)))
    stats = worker.run(until_idle=True)
    assert queue.dead == ["m1"]  # at once, no retry
    assert queue.released == ["m2", "m3"]  # retried; the third receive's release lets the redrive move it
    assert failures == [
        ("model_unavailable", "the x3 upscale model is not installed"),
        ("retries_exhausted", "CUDA error: device lost (after 3 attempts)"),
    ]
    assert (stats.failed, stats.released, stats.done) == (2, 2, 0)
