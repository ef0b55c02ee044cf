"""Faults and load on the local stack's real servers: every job ends, as it should, and is accounted for.

About 40 uploads through the API (mixed sizes and formats, 10 % hostile, 10 % duplicates of which half at
once, 5 % asking for a missing model, 5 % killed mid-render), with the dispatcher killed and restarted and
SeaweedFS restarted while they are in flight. See :mod:`atelier.local.faults` for the rules it is held to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atelier.local import faults
from atelier.local.api_server import serve_api
from atelier.local.dispatcher import Dispatcher
from atelier.local.stack import LocalStack

pytestmark = pytest.mark.integration

# Lambda's timing, scaled down: its retries (about a minute, then two) come after a copy that died holding
# the job has lost its claim on it (its function's timeout). A CPU render here takes a few seconds at most,
# the dev anime model up to tens of seconds on two loaded cores.
TIMEOUTS_S = {"AnimeFunction": 60.0, "DeadLetterFunction": 30.0}
CPU_TIMEOUT_S = 10.0
RETRY_DELAYS = (15.0, 50.0)  # the first after a CPU style's timeout, both after anime's


def dispatcher_options(state_dir: Path, stack: LocalStack) -> dict[str, Any]:
    functions = [fn.logical_id for fn in stack.template.functions()] if stack.template else []
    return {
        "apply_env": False,
        "isolation": "process",
        "state_dir": state_dir,
        "max_workers": 4,
        "retry_delays": RETRY_DELAYS,
        "function_timeouts": {
            fn: TIMEOUTS_S.get(fn, CPU_TIMEOUT_S) for fn in functions if fn != "ApiFunction"
        },
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own (this test restarts its servers), with the dev anime model installed."""
    models = tmp_path_factory.mktemp("models")
    build_dev = [sys.executable, "-m", "atelier.models.cli", "--cache", str(models), "build-dev"]
    subprocess.run([*build_dev, "--only", "animeganv2-dev"], check=True, capture_output=True, timeout=300)
    stack = LocalStack(tmp_path_factory.mktemp("fault-stack"), parameters={"AnimeModel": "animeganv2-dev"})
    stack.start()
    stack.env["ATELIER_MODEL_DIR"] = str(models)
    try:
        yield stack
    finally:
        stack.stop()


def drain(stack: LocalStack, queue: str) -> list[dict[str, Any]]:
    """Every message of a queue, removed, as JSON."""
    url, out = stack.queue_urls[queue], []
    while True:
        got = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not got.get("Messages"):
            return out
        for message in got["Messages"]:
            out.append(json.loads(message["Body"]))
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def run_scenario(
    stack: LocalStack, state_dir: Path, count: int, seed: int, monkeypatch: pytest.MonkeyPatch
) -> faults.Run:
    """Run :func:`atelier.local.faults.run` on ``stack`` with ``count`` uploads."""
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    options = dispatcher_options(state_dir, stack)
    stack.start_dispatcher(**options)
    url, stop_api = serve_api(stack)
    try:

        def list_renders(image_id: str) -> list[str]:
            listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"renders/{image_id}/")
            return [o["Key"] for o in listed.get("Contents", [])]

        def restart() -> Dispatcher:
            return stack.restart_dispatcher(abandon=True, **options)

        return faults.run(
            faults.plan(count, seed=seed, sizes=(320, 640, 1024, 1600)),
            faults.Client(url + "/api"),
            dispatcher=lambda: stack.dispatcher,
            restart_dispatcher=restart,
            restart_s3=stack.restart_s3,
            list_renders=list_renders,
            dead_letters=lambda: drain(stack, "RenderDeadLetterQueue"),
            bound=300.0,
        )
    finally:
        stop_api()


def test_every_job_ends_as_it_should_through_faults_and_load(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_scenario(stack, tmp_path / "dispatcher", 40, 7, monkeypatch)
    summary = faults.summary(result)
    print(json.dumps(summary))
    assert faults.check(result) == []
    assert set(result.restarts) == {"dispatcher", "s3"}
    assert len(result.killed) >= 2  # the marked uploads' invocations were killed mid-render, and retried
    kinds = summary["kinds"]
    assert kinds["hostile"] == 4 and kinds["missing_model"] == 2
    assert summary["dead_letters"] == kinds["missing_model"]  # the only failed jobs of this run
