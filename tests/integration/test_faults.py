"""Faults and load on the local stack's real servers: every job ends, as it should, and is accounted for.

About 40 uploads through the API (mixed sizes and formats, 10 % hostile, 10 % duplicates of which half at
once, 5 % asking for a missing model, 5 % killed mid-render), with the dispatcher killed and restarted and
SeaweedFS restarted while they are in flight. See :mod:`atelier_dev.local.faults` for the rules it is held to;
``bench/faults.py`` runs the same with 300 uploads and reports the times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from atelier_dev.local import faults
from atelier_dev.local.stack import LocalStack
from tests.stacks import start_dev_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own (this test restarts its servers), with the dev anime model installed; moto in a
    process of its own, as the API, the dispatcher and the client share this one."""
    stack = start_dev_stack(tmp_path_factory, "fault-stack", moto_mode="process")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)  # about two minutes on two cores; the run itself is bounded at five
def test_every_job_ends_as_it_should_through_faults_and_load(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    uploads = faults.plan(40, seed=7, sizes=(320, 640, 1024, 1600))
    result = faults.on_stack(stack, uploads, tmp_path / "dispatcher")
    summary = faults.summary(result)
    print(json.dumps(summary))
    assert faults.check(result) == []
    assert set(result.restarts) == {"dispatcher", "s3"}
    assert len(result.killed) == summary["kinds"]["killed"] == 2  # each killed mid-render, then retried
    assert summary["kinds"]["hostile"] == 4 and summary["kinds"]["missing_model"] == 2
    assert summary["dead_letters"] == 2  # the missing model's jobs: the only ones that fail here
