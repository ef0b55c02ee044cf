"""The upscale worker's queue protocol on the local stack's SQS, with the real EDSR graph on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import onnx
import pytest

from atelier.adapters.aws.sqs import SqsJobQueue
from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys
from atelier.entrypoints import wiring
from atelier.entrypoints.gpu_worker import UpscaleModels, build_job, scale_of
from atelier.inference.models import edsr
from atelier.worker import Worker
from atelier_dev.local.dispatcher import Dispatcher
from atelier_dev.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dev EDSR-baseline graphs (seeded, untrained weights) for x2, x3, x4."""
    folder = tmp_path_factory.mktemp("edsr")
    for scale in (2, 3, 4):
        onnx.save(edsr.build(scale, seed=0), str(folder / f"edsr_baseline_x{scale}.onnx"))
    return folder


def drain(stack: LocalStack, url: str) -> None:
    """Delete every message (PurgeQueue is allowed once a minute)."""
    while True:
        got = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages"
        )
        if not got:
            return
        for m in got:
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def queue(local_stack: LocalStack) -> Iterator[str]:
    """The upscale queue, emptied before and after."""
    url = local_stack.queue_urls["UpscaleQueue"]
    drain(local_stack, url)
    yield url
    drain(local_stack, url)


def photo(width: int, height: int) -> bytes:
    img = cv2.imread(str(ROOT / "samples" / "chelsea.jpg"))
    ok, buf = cv2.imencode(".jpg", cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
    assert ok
    return buf.tobytes()


def upload(stack: LocalStack, url: str, key: str, body: bytes) -> str:
    """Put an object; the template's rule (played by the dispatcher) queues one message for it."""
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"].strip('"')
    assert stack.dispatcher.wait_idle(timeout=30)
    assert queued(stack, url) == 1
    return str(etag)


def worker_for(stack: LocalStack, url: str, models: Path, **options: Any) -> Worker:
    app = wiring.build()
    loaded = UpscaleModels(lambda s: models / f"edsr_baseline_x{s}.onnx", provider="cpu")
    return Worker(SqsJobQueue(stack.sqs, url, wait_seconds=1), build_job(app, loaded), **options)


def queued(stack: LocalStack, url: str) -> int:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def status(stack: LocalStack, image_id: str) -> dict[str, dict[str, Any]]:
    store = DynamoStatusStore(stack.dynamodb, stack.env["ATELIER_STATUS_TABLE"])
    return {i["style"]: i for i in store.get_status(image_id)}


def test_scale_is_chosen_per_upload() -> None:
    assert scale_of("incoming/upscale/x2/a.jpg", {}) == 2
    assert scale_of("incoming/upscale/a.jpg", {"scale": "3"}) == 3
    assert scale_of("incoming/upscale/a.jpg", {"Scale": "x2"}) == 2
    assert scale_of("incoming/upscale/holiday/a.jpg", {}) == 4
    assert scale_of("incoming/upscale/x9/a.jpg", {"scale": "7"}) == 4


def test_upload_under_upscale_reaches_the_queue_and_renders(
    local_stack: LocalStack, dispatcher: Dispatcher, queue: str, models: Path, unique_id: str
) -> None:
    key = f"incoming/upscale/x2/{unique_id}/cat.jpg"
    etag = upload(local_stack, queue, key, photo(64, 48))
    # the template's rule sent the event to the queue, and no style function ran for it
    assert [d.event["detail"]["object"]["key"] for d in dispatcher.deliveries() if unique_id in str(d.event)]
    assert not [i for i in dispatcher.invocations() if i.key and unique_id in i.key]
    stats = worker_for(local_stack, queue, models).run(until_idle=True)
    assert stats.done == 1 and stats.released == 0
    image_id = keys.drop_in_image_id(key, etag)
    item = status(local_stack, image_id)["upscale"]
    assert item["state"] == "done" and item["output_key"] == f"renders/{image_id}/upscale-x2.png"
    assert item["factor"] == 2
    assert (item["width"], item["height"]) == (128, 96)
    body = local_stack.s3.get_object(Bucket=local_stack.bucket, Key=item["output_key"])["Body"].read()
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert queued(local_stack, queue) == 0  # deleted only after the render was stored


def test_duplicate_message_renders_once(
    local_stack: LocalStack, queue: str, models: Path, unique_id: str
) -> None:
    key = f"incoming/upscale/x2/{unique_id}/dup.jpg"
    upload(local_stack, queue, key, photo(40, 30))
    event = local_stack.dispatcher.object_event(key)
    local_stack.sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(event))  # S3 delivered it twice
    stats = worker_for(local_stack, queue, models).run(until_idle=True)
    first, second = stats.results
    assert stats.done == 2 and first["state"] == "done"
    assert (second["state"], second["message"]) == ("skipped", "already finished")  # rendered once
    assert len(status(local_stack, stats.results[0]["image_id"])) == 1
    assert queued(local_stack, queue) == 0


def test_long_job_keeps_its_lease(local_stack: LocalStack, queue: str, models: Path, unique_id: str) -> None:
    key = f"incoming/upscale/x2/{unique_id}/slow.jpg"
    upload(local_stack, queue, key, photo(40, 30))
    worker = worker_for(local_stack, queue, models, visibility=2, heartbeat=0.5)
    job = worker.job
    stolen: list[int] = []

    def slow(event: dict[str, Any]) -> dict[str, Any]:
        time.sleep(4)  # twice the lease: only the heartbeat keeps the message hidden
        got = local_stack.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, VisibilityTimeout=1)
        stolen.append(len(got.get("Messages", [])))
        return job(event)

    worker.job = slow
    stats = worker.run(max_jobs=1)
    assert stolen == [0] and stats.done == 1
    assert queued(local_stack, queue) == 0


def test_poison_message_reaches_the_dead_letter_queue(
    local_stack: LocalStack, queue: str, models: Path
) -> None:
    dlq = local_stack.queue_urls["UpscaleDeadLetterQueue"]
    drain(local_stack, dlq)
    local_stack.sqs.send_message(QueueUrl=queue, MessageBody="{this is not an event")
    worker = worker_for(local_stack, queue, models, retry_delay=0)
    stats = worker.run(until_idle=True)
    assert stats.done == 0 and stats.released == 3  # the template's maxReceiveCount
    moved = local_stack.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in moved] == ["{this is not an event"]


def spawn_worker(stack: LocalStack, url: str, models: Path, grace: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        **stack.env,
        "ATELIER_UPSCALE_QUEUE_URL": url,
        "ATELIER_UPSCALE_MODEL": str(models / "edsr_baseline_x{scale}.onnx"),
        "ATELIER_WORKER_WAIT_SECONDS": "1",
        "ATELIER_WORKER_GRACE": str(grace),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "atelier_dev.cli", "worker", "--tile", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), "".join(lines)
    return lines


def test_sigterm_mid_job_finishes_the_job_and_deletes_its_message(
    local_stack: LocalStack, queue: str, models: Path, unique_id: str
) -> None:
    key = f"incoming/upscale/{unique_id}/big.jpg"  # x4 of 320x240: seconds of CPU work
    etag = upload(local_stack, queue, key, photo(320, 240))
    proc = spawn_worker(local_stack, queue, models, grace=60)
    lines = wait_for_line(proc, "loaded")  # the model loads when the first job starts
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, "".join(lines)
    item = status(local_stack, keys.drop_in_image_id(key, etag))["upscale"]
    assert item["state"] == "done" and item["factor"] == 4 and (item["width"], item["height"]) == (1280, 960)
    assert queued(local_stack, queue) == 0


def test_killed_mid_job_the_message_comes_back_within_the_grace_period(
    local_stack: LocalStack, queue: str, models: Path, unique_id: str
) -> None:
    key = f"incoming/upscale/{unique_id}/killed.jpg"
    upload(local_stack, queue, key, photo(320, 240))
    proc = spawn_worker(local_stack, queue, models, grace=2)
    wait_for_line(proc, "loaded")
    proc.send_signal(signal.SIGTERM)  # the lease shrinks to 2 s ...
    time.sleep(0.3)
    proc.kill()  # ... and the process dies before the job ends (a Spot reclaim after its notice)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    back: list[dict[str, Any]] = []
    while not back and time.monotonic() < deadline:
        back = local_stack.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    assert back and key.split("/")[-1] in back[0]["Body"]  # never lost: visible again, for another worker


def test_upscale_factor_comes_from_the_upload_apis_option() -> None:
    assert scale_of("incoming/all-upscale/u/alice/abc/a.jpg", {"options": '{"upscale": {"factor": 2}}'}) == 2
    assert scale_of("incoming/all-upscale/u/alice/abc/a.jpg", {"options": "not json"}) == 4


def test_the_served_demo_keeps_an_upscale_worker_running_until_stopped(
    local_stack: LocalStack, dispatcher: Dispatcher, queue: str, models: Path, unique_id: str, tmp_path: Path
) -> None:
    from atelier.inference import models as catalogue
    from atelier_dev import demo

    for scale in (2, 3, 4):  # the dev models where the demo looks for them
        target = catalogue.installed_path(f"edsr_baseline_x{scale}-dev", root=tmp_path)
        target.parent.mkdir(parents=True)
        target.write_bytes((models / f"edsr_baseline_x{scale}.onnx").read_bytes())
    worker, thread = demo.serve_worker(local_stack, tmp_path)
    try:
        key = f"incoming/upscale/x2/{unique_id}/late.jpg"  # asked for after the demo's own run
        put = local_stack.s3.put_object(Bucket=local_stack.bucket, Key=key, Body=photo(64, 48))
        image_id = keys.drop_in_image_id(key, put["ETag"].strip('"'))
        deadline = time.monotonic() + 120
        while status(local_stack, image_id).get("upscale", {}).get("state") != "done":
            assert time.monotonic() < deadline, status(local_stack, image_id)
            time.sleep(0.5)
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_a_copy_onto_itself_with_new_metadata_is_a_new_event(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str
) -> None:
    """S3 sends ObjectCreated for a CopyObject even when the bytes (and so the ETag) are the same: the
    local dispatcher tells the versions apart by their time as well (a retry of a style relies on it)."""
    key = f"incoming/upscale/x2/{unique_id}/again.jpg"

    def delivered() -> int:  # events for this key only: other tests' messages may still be in flight
        return len([d for d in dispatcher.deliveries() if unique_id in str(d.event)])

    local_stack.s3.put_object(Bucket=local_stack.bucket, Key=key, Body=photo(32, 24))
    assert local_stack.dispatcher.wait_idle(timeout=30)
    assert delivered() == 1
    time.sleep(1.1)  # S3 keeps LastModified to the second
    source = {"Bucket": local_stack.bucket, "Key": key}
    local_stack.s3.copy_object(
        Bucket=local_stack.bucket,
        Key=key,
        CopySource=source,
        Metadata={"retry": "1"},
        MetadataDirective="REPLACE",
    )
    assert local_stack.dispatcher.wait_idle(timeout=30)
    assert delivered() == 2
    assert local_stack.dispatcher.wait_idle(timeout=5)
    assert delivered() == 2  # and no more: one version is delivered once
