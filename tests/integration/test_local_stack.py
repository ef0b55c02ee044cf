"""The local stack over HTTP: resources from template.yaml, S3 -> EventBridge -> Lambda routing, retries."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3
import psutil
import pytest

from atelier_dev.local.dispatcher import Dispatcher, LambdaContext
from atelier_dev.local.stack import LocalStack

CHELSEA = Path(__file__).resolve().parents[2] / "samples" / "chelsea.jpg"

pytestmark = pytest.mark.integration

STYLES = ("SketchFunction", "PencilFunction", "OilFunction", "WatercolorFunction")


class Recorder:
    """Handler overrides that record what each function received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], LambdaContext]] = []
        self.lock = threading.Lock()

    def handler(self, function: str) -> Any:
        def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
            with self.lock:
                self.calls.append((function, event, context))
            return {"ok": function}

        return handle

    def functions_for(self, encoded_key: str) -> list[str]:
        with self.lock:
            return sorted(f for f, e, _ in self.calls if e["detail"]["object"]["key"] == encoded_key)


@pytest.fixture
def recorder(dispatcher: Dispatcher) -> Recorder:
    recorder = Recorder()
    for function in STYLES:
        dispatcher.override(function, recorder.handler(function))
    return recorder


def _put(stack: LocalStack, key: str, body: bytes = b"\xff\xd8 not really a jpeg") -> str:
    etag: str = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"]
    return etag.strip('"')


# --- resources -------------------------------------------------------------------------------------------


def test_every_resource_of_the_template_exists(local_stack: LocalStack) -> None:
    template = local_stack.template
    assert template is not None
    buckets = {b["Name"] for b in local_stack.s3.list_buckets()["Buckets"]}
    for bucket in template.buckets():
        assert bucket.name in buckets
    for table in template.tables():
        described = local_stack.dynamodb.describe_table(TableName=table.name)["Table"]
        assert described["KeySchema"] == table.create_kwargs["KeySchema"]
        assert {tuple(d.items()) for d in described["AttributeDefinitions"]} == {
            tuple(d.items()) for d in table.create_kwargs["AttributeDefinitions"]
        }
        assert (
            described.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
            == (table.create_kwargs["BillingMode"])
        )
        ttl = local_stack.dynamodb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
        if table.ttl_attribute:
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == table.ttl_attribute
    for queue in template.queues():
        url = local_stack.sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
        assert url == local_stack.queue_urls[queue.logical_id]
        attributes = local_stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"] == queue.arn
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in queue.attributes:
                assert attributes[key] == queue.attributes[key]
    # The template's Outputs resolve to what was created.
    outputs = template.outputs()
    if "DeadLetterQueueUrl" in outputs:
        assert outputs["DeadLetterQueueUrl"] == local_stack.queue_urls["RenderDeadLetterQueue"]


def test_the_environment_points_plain_boto3_clients_at_the_local_servers(local_stack: LocalStack) -> None:
    env = local_stack.env
    assert env["ATELIER_BUCKET"] == local_stack.bucket
    assert env["ATELIER_STATUS_TABLE"] == local_stack.names["StatusTable"]
    assert env["ATELIER_IDEMPOTENCY_TABLE"] == local_stack.names["IdempotencyTable"]
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["AWS_ENDPOINT_URL_S3"].startswith("http://127.0.0.1:")
    # A client built the way the application builds one: no endpoint, no config, only the environment.
    s3 = boto3.client("s3")
    assert local_stack.bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    url = s3.generate_presigned_url("get_object", Params={"Bucket": local_stack.bucket, "Key": "k"})
    assert url.startswith(f"{env['AWS_ENDPOINT_URL_S3']}/{local_stack.bucket}/k?")  # path style by default
    assert local_stack.names["StatusTable"] in boto3.client("dynamodb").list_tables()["TableNames"]
    assert boto3.client("sqs").get_queue_url(QueueName=local_stack.names["RenderDeadLetterQueue"])


# --- routing ---------------------------------------------------------------------------------------------


def test_an_upload_under_incoming_sketch_reaches_the_sketch_function_only(
    local_stack: LocalStack, dispatcher: Dispatcher, recorder: Recorder, unique_id: str
) -> None:
    key = f"incoming/sketch/owner/{unique_id}/photo.jpg"
    etag = _put(local_stack, key, b"0123456789")
    assert dispatcher.wait_idle(30)
    assert recorder.functions_for(key) == ["SketchFunction"]
    _, event, context = next(c for c in recorder.calls if c[1]["detail"]["object"]["key"] == key)
    assert event["source"] == "aws.s3"
    assert event["detail-type"] == "Object Created"
    assert event["resources"] == [f"arn:aws:s3:::{local_stack.bucket}"]
    detail = event["detail"]
    assert detail["bucket"]["name"] == local_stack.bucket
    assert detail["object"]["size"] == 10
    assert detail["object"]["etag"] == etag
    assert "version-id" not in detail["object"]
    assert detail["reason"] == "PutObject"
    assert detail["object"]["sequencer"] and detail["request-id"] and detail["requester"]
    assert context.function_name == local_stack.names["SketchFunction"]
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn.endswith(f":function:{local_stack.names['SketchFunction']}")
    assert context.memory_limit_in_mb > 0
    assert 0 < context.get_remaining_time_in_millis() <= 900_000
    (invocation,) = [i for i in dispatcher.invocations("sketch") if i.key == key]
    assert invocation.outcome == "success"
    assert invocation.result == {"ok": "SketchFunction"}
    assert invocation.attempts == 1


def test_an_upload_under_incoming_all_reaches_the_four_style_functions(
    local_stack: LocalStack, dispatcher: Dispatcher, recorder: Recorder, unique_id: str
) -> None:
    key = f"incoming/all/owner/{unique_id}/photo.jpg"
    _put(local_stack, key)
    assert dispatcher.wait_idle(30)
    assert recorder.functions_for(key) == sorted(STYLES)
    request_ids = {c.aws_request_id for f, e, c in recorder.calls if e["detail"]["object"]["key"] == key}
    assert len(request_ids) == 4


def test_renders_and_other_styles_do_not_reach_the_sketch_function(
    local_stack: LocalStack, dispatcher: Dispatcher, recorder: Recorder, unique_id: str
) -> None:
    render = f"renders/{unique_id}/sketch.jpg"
    oil = f"incoming/oil/owner/{unique_id}/photo.jpg"
    _put(local_stack, render)
    _put(local_stack, oil)
    assert dispatcher.wait_idle(30)
    assert recorder.functions_for(oil) == ["OilFunction"]
    assert recorder.functions_for(render) == []
    # Even delivered explicitly, an event for a render matches no rule.
    assert dispatcher.dispatch_object(render) == []
    assert dispatcher.targets(dispatcher.object_event(render)) == []


@pytest.mark.parametrize(
    "name",
    ["red flower.jpg", "red+flower.jpg", "café ünï 写真.jpg", "100% (1) & co=x?.jpg", "a  b/+/c.jpg"],
)
def test_keys_arrive_url_encoded_as_s3_encodes_them(
    local_stack: LocalStack, dispatcher: Dispatcher, recorder: Recorder, unique_id: str, name: str
) -> None:
    key = f"incoming/sketch/owner/{unique_id}/{name}"
    _put(local_stack, key)
    assert dispatcher.wait_idle(30)
    encoded = quote_plus(key, safe="/")
    assert recorder.functions_for(encoded) == ["SketchFunction"]
    assert " " not in encoded and all(ord(ch) < 128 for ch in encoded)
    assert unquote_plus(encoded) == key
    assert local_stack.s3.head_object(Bucket=local_stack.bucket, Key=unquote_plus(encoded))


# --- retries, destinations, duplicates -------------------------------------------------------------------


def test_a_failing_handler_is_retried_then_its_failure_record_reaches_the_dead_letter_queue(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str
) -> None:
    attempts: list[float] = []

    def always_fails(event: dict[str, Any], context: LambdaContext) -> None:
        attempts.append(time.monotonic())
        raise ValueError(f"cannot render {unique_id}")

    dispatcher.override("SketchFunction", always_fails)
    key = f"incoming/sketch/owner/{unique_id}/broken.jpg"
    _put(local_stack, key)
    assert dispatcher.wait_idle(30)

    fn = dispatcher.functions["SketchFunction"]
    assert len(attempts) == fn.max_retry_attempts + 1
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.15 for gap in gaps)
    (invocation,) = [i for i in dispatcher.invocations("SketchFunction") if i.key == key]
    assert invocation.outcome == "failed"
    assert invocation.attempts == fn.max_retry_attempts + 1
    assert invocation.error_type == "ValueError"
    assert fn.on_failure is not None
    # the on-failure destination is the marker function: it fails the job and keeps the record
    assert invocation.destination == fn.on_failure.arn == dispatcher.functions["DeadLetterFunction"].arn
    (marked,) = [
        i
        for i in dispatcher.invocations("DeadLetterFunction")
        if i.event["requestPayload"]["detail"]["object"]["key"] == key
    ]
    assert marked.outcome == "success" and marked.result["reason"] == "retries_exhausted"

    record = _receive_record(local_stack, key)
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    context = record["requestContext"]
    assert context["requestId"] == invocation.request_id
    assert context["functionArn"] == f"{fn.arn}:$LATEST"
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == fn.max_retry_attempts + 1
    assert record["requestPayload"] == invocation.event
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == f"cannot render {unique_id}"
    assert record["job"]["style"] == "sketch" and record["job"]["reason"] == "retries_exhausted"
    assert (
        record["job"]["message"] == f"cannot render {unique_id} (after {fn.max_retry_attempts + 1} attempts)"
    )


def _receive_record(stack: LocalStack, key: str) -> dict[str, Any]:
    url = stack.queue_urls["RenderDeadLetterQueue"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            record: dict[str, Any] = json.loads(message["Body"])
            if record["requestPayload"]["detail"]["object"]["key"] == key:
                stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                return record
    raise AssertionError(f"no failure record for {key} in the dead-letter queue")


def test_the_same_event_can_be_delivered_twice_and_concurrently(
    local_stack: LocalStack, dispatcher: Dispatcher, unique_id: str
) -> None:
    barrier = threading.Barrier(2, timeout=10)
    seen: list[str] = []

    def meets_its_twin(event: dict[str, Any], context: LambdaContext) -> str:
        barrier.wait()  # only passes if both copies run at the same time
        seen.append(event["id"])
        return context.aws_request_id

    key = f"renders-free/{unique_id}/photo.jpg"  # outside incoming/: polling leaves it alone
    _put(local_stack, key)
    event = dispatcher.object_event(key)
    event["detail"]["object"]["key"] = quote_plus(f"incoming/sketch/{unique_id}/photo.jpg", safe="/")
    with dispatcher.overriding({"sketch": meets_its_twin}):
        first, second = dispatcher.emit(event), dispatcher.emit(event)
        assert dispatcher.wait_idle(30)
    assert [i.outcome for i in first + second] == ["success", "success"]
    assert seen == [event["id"], event["id"]]
    assert first[0].request_id != second[0].request_id


def test_objects_present_at_start_are_replayed_only_when_asked(
    local_stack: LocalStack, recorder: Recorder, unique_id: str
) -> None:
    # recorder: the session's dispatcher sees these objects too; its overrides keep real handlers out.
    prefix = f"incoming/sketch/replay-{unique_id}/"
    _put(local_stack, prefix + "old.jpg")
    first = _replayed(local_stack, prefix, replay=False)
    assert first == []
    second = _replayed(local_stack, prefix, replay=True)
    assert second == [prefix + "new-False.jpg", prefix + "old.jpg"]


def _replayed(stack: LocalStack, prefix: str, *, replay: bool) -> list[str]:
    """Start a dispatcher on ``prefix``: what it delivers at start, then that it notices a new object."""
    assert stack.template is not None
    calls: list[str] = []

    def record(event: dict[str, Any], context: LambdaContext) -> None:
        calls.append(event["detail"]["object"]["key"])

    with Dispatcher(
        stack.template,
        env=stack.env,
        s3=stack.s3,
        sqs=stack.sqs,
        prefix=prefix,
        replay_existing=replay,
        apply_env=False,
    ) as own:
        own.override("sketch", record)
        assert own.wait_idle(30)
        at_start = sorted(calls)
        _put(stack, prefix + f"new-{replay}.jpg")
        assert own.wait_idle(30)
        assert sorted(calls) == sorted([*at_start, prefix + f"new-{replay}.jpg"])
    return at_start


# --- SeaweedFS enforces presigned POST policies ----------------------------------------------------------


def _post_form(url: str, fields: dict[str, str], body: bytes, content_type: str) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url,
        data=b"".join(parts),
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_seaweedfs_enforces_presigned_post_policies(local_stack: LocalStack, unique_id: str) -> None:
    key = f"presign-check/{unique_id}/photo.jpg"
    post = local_stack.s3.generate_presigned_post(
        local_stack.bucket,
        key,
        Fields={"Content-Type": "image/jpeg"},
        Conditions=[["content-length-range", 1, 1000], {"Content-Type": "image/jpeg"}],
        ExpiresIn=300,
    )
    status, _ = _post_form(post["url"], post["fields"], b"x" * 100, "image/jpeg")
    assert status in (200, 201, 204)
    assert local_stack.s3.head_object(Bucket=local_stack.bucket, Key=key)["ContentLength"] == 100

    status, body = _post_form(post["url"], post["fields"], b"x" * 5000, "image/jpeg")
    assert (status, "EntityTooLarge" in body) == (400, True)

    fields = {**post["fields"], "Content-Type": "text/plain"}
    status, body = _post_form(post["url"], fields, b"x" * 100, "text/plain")
    assert status == 403, body


# --- lifecycle -------------------------------------------------------------------------------------------


def _ours(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_a_stack_in_a_with_block_leaves_nothing_running(tmp_path: Path) -> None:
    with LocalStack(tmp_path / "stack") as stack:
        assert stack.s3_server is not None and stack.s3_server.pid is not None
        weed = psutil.Process(stack.s3_server.pid)
        assert weed.is_running()
        leftovers = stack.s3_server.leftovers
        assert stack.bucket in {b["Name"] for b in stack.s3.list_buckets()["Buckets"]}
    assert not weed.is_running()
    assert _ours(tmp_path) == []
    assert leftovers and not any(Path(p).exists() for p in leftovers)
    assert not list(Path("/tmp").glob(f"weed.*.{weed.pid}"))  # its glog files went to the stack's logs


def _client_of(state: dict[str, Any], service: str, endpoint: str | None = None) -> Any:
    """A plain boto3 client on a detached stack, from what stack.json records."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint or state["endpoints"][service],
        aws_access_key_id=state["env"]["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=state["env"]["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def test_cli_up_renders_what_any_client_drops_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "detached"
    cli = [sys.executable, "-m", "atelier_dev.local.cli"]
    up = subprocess.run([*cli, "up", "--dir", str(data_dir)], capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((data_dir / "stack.json").read_text())
        runner = json.loads((data_dir / "runner.json").read_text())
        assert runner["worker"] is True
        pids = [s["pid"] for s in state["servers"].values()] + [runner["pid"]]
        assert all(psutil.pid_exists(pid) for pid in pids)
        with urllib.request.urlopen(f"{runner['api']}/", timeout=10) as page:  # the gallery
            assert page.status == 200

        env = subprocess.run(
            [*cli, "status", "--dir", str(data_dir), "--env"], capture_output=True, text=True
        )
        assert env.returncode == 0
        assert f"export AWS_ENDPOINT_URL_S3={state['endpoints']['s3']}" in env.stdout
        assert "export ATELIER_BUCKET=" in env.stdout

        s3 = _client_of(state, "s3")
        bucket = state["env"]["ATELIER_BUCKET"]
        assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        # a plain S3 client drops a photo; the runner's dispatcher renders it in the function's own process
        s3.put_object(Bucket=bucket, Key="incoming/sketch/dropped.jpg", Body=CHELSEA.read_bytes())
        deadline = time.monotonic() + 120
        renders: list[str] = []
        while not renders and time.monotonic() < deadline:
            listed = s3.list_objects_v2(Bucket=bucket, Prefix="renders/").get("Contents", [])
            renders = [o["Key"] for o in listed if o["Key"].endswith("/sketch.jpg")]
            time.sleep(0.5)
        assert renders, (data_dir / "logs" / "runner.log").read_text()[-3000:]
        functions = [p.pid for p in psutil.Process(runner["pid"]).children(recursive=True)]
        assert functions  # the sketch function's warm environment, a child of the runner
        pids += functions

        table = subprocess.run([*cli, "status", "--dir", str(data_dir)], capture_output=True, text=True)
        assert table.returncode == 0 and "running" in table.stdout and runner["api"] in table.stdout
    finally:
        down = subprocess.run(
            [*cli, "down", "--dir", str(data_dir)], capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stderr
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    assert _ours(data_dir) == []
    after = subprocess.run([*cli, "status", "--dir", str(data_dir)], capture_output=True, text=True)
    assert after.returncode == 1


def test_cli_up_listen_all_and_no_worker_leave_the_servers_and_the_queue_to_containers(
    tmp_path: Path,
) -> None:
    """`--listen 0.0.0.0`: every server listens on all addresses (a container reaches the host through the
    Docker bridge's gateway, never 127.0.0.1), and S3 answers on each IPv4 address this machine has.
    `--no-worker`: the runner routes an upscale upload to its queue and leaves it there, for the worker's
    image (tests/build/test_images.py) to consume."""
    data_dir = tmp_path / "everywhere"
    cli = [sys.executable, "-m", "atelier_dev.local.cli"]
    up = [*cli, "up", "--dir", str(data_dir), "--listen", "0.0.0.0", "--no-worker"]
    started = subprocess.run(up, capture_output=True, text=True, timeout=240)
    try:
        assert started.returncode == 0, started.stderr
        state = json.loads((data_dir / "stack.json").read_text())
        assert state["listen"] == "0.0.0.0"
        for name, info in state["servers"].items():
            listening = {
                c.laddr.ip
                for c in psutil.Process(info["pid"]).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            }
            assert listening & {"0.0.0.0", "::"}, (name, listening)
        addresses = {
            a.address for nic in psutil.net_if_addrs().values() for a in nic if a.family.name == "AF_INET"
        }
        port = state["endpoints"]["s3"].rsplit(":", 1)[1]
        for address in sorted(addresses):
            s3 = _client_of(state, "s3", f"http://{address}:{port}")
            assert state["env"]["ATELIER_BUCKET"] in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        runner = json.loads((data_dir / "runner.json").read_text())
        s3.put_object(
            Bucket=state["env"]["ATELIER_BUCKET"],
            Key="incoming/upscale/x2/cat.jpg",
            Body=CHELSEA.read_bytes(),
        )
        sqs = _client_of(state, "sqs")

        def queued() -> list[str]:
            """The queue's visible and leased messages."""
            got = sqs.get_queue_attributes(
                QueueUrl=state["queue_urls"]["UpscaleQueue"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            return [got["ApproximateNumberOfMessages"], got["ApproximateNumberOfMessagesNotVisible"]]

        deadline = time.monotonic() + 60
        while queued() == ["0", "0"] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # a worker in the runner would have leased it by now (it polls every second)
        assert queued() == ["1", "0"], (data_dir / "logs" / "runner.log").read_text()[-3000:]
        assert runner["worker"] is False
    finally:
        subprocess.run([*cli, "down", "--dir", str(data_dir)], capture_output=True, text=True, timeout=60)
