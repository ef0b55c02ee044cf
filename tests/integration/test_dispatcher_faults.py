"""Lambda's failure modes locally: environments that time out, crash or are killed; a crashed dispatcher."""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from atelier_dev.local.cfn import LocalTemplate
from atelier_dev.local.dispatcher import Dispatcher, LambdaContext
from atelier_dev.local.runtime import exit_message
from atelier_dev.local.stack import LocalStack

pytestmark = pytest.mark.integration

HANDLERS = '''"""Handlers of the fault tests: each leaves its traces under MARKER_DIR."""

import json
import os
import time
from pathlib import Path

MARKERS = Path(os.environ["MARKER_DIR"])
with (MARKERS / "inits.log").open("a") as inits:
    inits.write(f"{os.getpid()}\\n")
print("init prints on stdout, as Powertools' Logger does")
CALLS = 0


def echo(event, context):
    global CALLS
    CALLS += 1
    print(json.dumps({"level": "INFO", "message": "echo", "calls": CALLS}))
    return {
        "pid": os.getpid(),
        "calls": CALLS,
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def meet(event, context):
    group = MARKERS / event["group"]
    group.mkdir(exist_ok=True)
    (group / str(os.getpid())).touch()
    deadline = time.monotonic() + 10
    while len(list(group.iterdir())) < event["count"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"pid": os.getpid(), "met": len(list(group.iterdir()))}


def slow(event, context):
    (MARKERS / f"slow-{os.getpid()}").touch()
    time.sleep(event["seconds"])
    return "woke up"


def hang_once(event, context):
    marker = MARKERS / f"hung-{event['id']}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    return {"pid": os.getpid()}


def fail(event, context):
    raise ValueError(f"cannot render {event['id']}")


def hog(event, context):
    held = bytearray(event["mb"] << 20)  # zero pages are not resident until written
    for i in range(0, len(held), 4096):
        held[i] = 1
    time.sleep(event.get("hold", 0))
    return {"pid": os.getpid(), "mb": event["mb"]}


def span(event, context):
    started = time.time()
    time.sleep(event["seconds"])
    return {"pid": os.getpid(), "started": started, "ended": time.time()}
'''

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: fn/
    Timeout: 30
    MemorySize: 256
    EventInvokeConfig:
      MaximumRetryAttempts: 0
Resources:
  FaultsBucket:
    Type: AWS::S3::Bucket
    Properties:
      NotificationConfiguration:
        EventBridgeConfiguration:
          EventBridgeEnabled: true
  FailureQueue:
    Type: AWS::SQS::Queue
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
  MeetFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.meet
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.slow
      Timeout: 1
      EventInvokeConfig:
        MaximumRetryAttempts: 1
        DestinationConfig:
          OnFailure:
            Type: SQS
            Destination: !GetAtt FailureQueue.Arn
  HangOnceFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.hang_once
      EventInvokeConfig:
        MaximumRetryAttempts: 1
  FailingFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.fail
      EventInvokeConfig:
        DestinationConfig:
          OnFailure:
            Type: Lambda
            Destination: !Sub "${CatcherFunction.Arn}:$LATEST"
  CatcherFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: missing.handler
  HogFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.hog
      MemorySize: 160
  OneAtATimeFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.span
      ReservedConcurrentExecutions: 1
  UploadFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
      Events:
        Upload:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.s3]
              detail-type: [Object Created]
              detail:
                bucket:
                  name: [!Ref FaultsBucket]
"""


@dataclass
class Faults:
    """The fault template, resolved against the session's stack, with its bucket and queue created."""

    template: LocalTemplate
    bucket: str
    queue_url: str


@pytest.fixture(scope="module")
def faults(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    root = tmp_path_factory.mktemp("faults")
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text(HANDLERS)
    (root / "template.yaml").write_text(TEMPLATE)
    template = LocalTemplate.from_file(
        root / "template.yaml",
        stack_name=f"faults-{uuid.uuid4().hex[:8]}",
        account=local_stack.account,
        sqs_endpoint=local_stack.endpoints["sqs"],
    )
    bucket = template.name_of("FaultsBucket")
    local_stack.s3.create_bucket(Bucket=bucket)
    queue_url = local_stack.sqs.create_queue(QueueName=template.name_of("FailureQueue"))["QueueUrl"]
    try:
        yield Faults(template, bucket, queue_url)
    finally:
        local_stack.sqs.delete_queue(QueueUrl=queue_url)


MakeDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def make_dispatcher(local_stack: LocalStack, faults: Faults, tmp_path: Path) -> Iterator[MakeDispatcher]:
    """Dispatchers on the fault template (process isolation, no polling unless asked), all stopped after."""
    made: list[Dispatcher] = []

    def make(*, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Dispatcher:
        options: dict[str, Any] = {
            "env": {**local_stack.env, "MARKER_DIR": str(tmp_path)},
            "s3": local_stack.s3,
            "sqs": local_stack.sqs,
            "prefix": None,
            "poll": False,
            "apply_env": False,
            "isolation": "process",
            "retry_delays": (0.05,),
        }
        options.update(kwargs)
        dispatcher = Dispatcher(faults.template, **options)
        made.append(dispatcher)
        for function, handler in (overrides or {}).items():
            dispatcher.override(function, handler)
        return dispatcher.start()

    yield make
    for dispatcher in made:
        dispatcher.stop()


def _wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _inits(markers: Path) -> list[int]:
    return [int(line) for line in (markers / "inits.log").read_text().split()]


def _receive_record(stack: LocalStack, queue_url: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = stack.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            record: dict[str, Any] = json.loads(message["Body"])
            if record["requestContext"]["requestId"] == request_id:
                stack.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                return record
    raise AssertionError(f"no failure record for {request_id}")


# --- warm environments -----------------------------------------------------------------------------------


def test_a_process_invoke_runs_in_a_warm_environment_initialised_once(
    make_dispatcher: MakeDispatcher, faults: Faults, tmp_path: Path
) -> None:
    dispatcher = make_dispatcher()
    first = dispatcher.invoke_async("EchoFunction", {"n": 1})
    assert first.done.wait(30)
    second = dispatcher.invoke_async("EchoFunction", {"n": 2})
    assert second.done.wait(30)

    assert (first.outcome, second.outcome) == ("success", "success")
    one, two = first.result, second.result
    assert one["pid"] != os.getpid()
    assert one["pid"] == two["pid"]
    assert (one["calls"], two["calls"]) == (1, 2)  # the same module, imported once
    assert _inits(tmp_path) == [one["pid"]]
    assert (one["event"], two["event"]) == ({"n": 1}, {"n": 2})
    fn = dispatcher.functions["EchoFunction"]
    assert one["request_id"] == first.request_id
    assert (one["function_name"], one["arn"], one["memory"]) == (fn.name, fn.arn, 256)
    assert 0 < one["remaining_ms"] <= 30_000
    assert dispatcher.running() == []


def test_a_busy_environment_never_takes_a_second_request(
    make_dispatcher: MakeDispatcher, tmp_path: Path
) -> None:
    dispatcher = make_dispatcher()
    first = dispatcher.invoke_async("MeetFunction", {"group": "pair", "count": 2})
    _wait_for(lambda: len(dispatcher.running()) == 1)  # its environment is busy with it now
    pair = [first, dispatcher.invoke_async("MeetFunction", {"group": "pair", "count": 2})]
    assert dispatcher.wait_idle(30)
    assert [i.outcome for i in pair] == ["success", "success"]
    assert [i.result["met"] for i in pair] == [2, 2]  # both ran at once, so in two environments
    pids = {i.result["pid"] for i in pair}
    assert len(pids) == 2

    alone = dispatcher.invoke_async("MeetFunction", {"group": "alone", "count": 1})
    assert alone.done.wait(30)
    assert alone.result["pid"] in pids  # an idle environment is reused
    assert sorted(_inits(tmp_path)) == sorted(pids)


def test_an_import_failure_is_reported_as_lambda_reports_it(make_dispatcher: MakeDispatcher) -> None:
    dispatcher = make_dispatcher()
    invocation = dispatcher.invoke_async("BrokenFunction", {})
    assert invocation.done.wait(30)
    assert invocation.outcome == "failed"
    assert invocation.error_type == "Runtime.ImportModuleError"
    assert invocation.error_message == "Unable to import module 'missing': No module named 'missing'"


def test_overrides_run_in_this_process_in_process_isolation(make_dispatcher: MakeDispatcher) -> None:
    def here(event: dict[str, Any], context: LambdaContext) -> int:
        return os.getpid()

    dispatcher = make_dispatcher(overrides={"EchoFunction": here})
    invocation = dispatcher.invoke_async("EchoFunction", {})
    assert invocation.done.wait(30)
    assert invocation.result == os.getpid()


# --- timeouts and crashes --------------------------------------------------------------------------------


def test_a_handler_past_its_timeout_is_killed_retried_and_reported(
    make_dispatcher: MakeDispatcher, local_stack: LocalStack, faults: Faults, tmp_path: Path
) -> None:
    dispatcher = make_dispatcher(function_timeouts={"SlowFunction": 0.5})
    event = {"id": uuid.uuid4().hex, "seconds": 60}
    invocation = dispatcher.invoke_async("SlowFunction", event)
    assert invocation.done.wait(30)

    fn = dispatcher.functions["SlowFunction"]
    assert fn.max_retry_attempts == 1
    assert invocation.outcome == "failed"
    assert invocation.attempts == 2
    assert invocation.error_type == "Sandbox.Timedout"
    assert invocation.errors == ["Sandbox.Timedout: Task timed out after 0.50 seconds"] * 2
    assert invocation.destination == faults.queue_url
    pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("slow-*")]
    assert len(pids) == 2  # each attempt in a fresh environment: the timed-out one was killed
    assert sorted(_inits(tmp_path)) == sorted(pids)
    assert not any(_alive(pid) for pid in pids)

    record = _receive_record(local_stack, faults.queue_url, invocation.request_id)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["functionArn"] == f"{fn.arn}:$LATEST"
    assert record["requestPayload"] == event
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "Sandbox.Timedout"
    assert record["responsePayload"]["errorMessage"] == "Task timed out after 0.50 seconds"


def test_a_killed_environment_fails_the_attempt_and_the_retry_succeeds(
    make_dispatcher: MakeDispatcher, tmp_path: Path
) -> None:
    dispatcher = make_dispatcher()
    event_id = uuid.uuid4().hex
    invocation = dispatcher.invoke_async("HangOnceFunction", {"id": event_id})
    marker = tmp_path / f"hung-{event_id}"
    _wait_for(lambda: marker.exists() and marker.read_text() != "")
    hung_pid = int(marker.read_text())
    assert dispatcher.running() == [(invocation, hung_pid)]

    assert dispatcher.kill(invocation.request_id)
    assert invocation.done.wait(30)
    assert invocation.outcome == "success"
    assert invocation.attempts == 2
    assert invocation.errors == ["Runtime.ExitError: Runtime exited with error: signal: killed"]
    assert invocation.result["pid"] != hung_pid
    assert not _alive(hung_pid)
    assert dispatcher.running() == []
    assert not dispatcher.kill(invocation.request_id)


def test_exit_messages_word_signals_and_statuses_as_lambda_does() -> None:
    assert exit_message(-9) == "Runtime exited with error: signal: killed"
    assert exit_message(-11) == "Runtime exited with error: signal: segmentation fault"
    assert exit_message(3) == "Runtime exited with error: exit status 3"
    assert exit_message(0) == "Runtime exited without providing a reason"


# --- destinations ----------------------------------------------------------------------------------------


def test_a_lambda_on_failure_destination_invokes_the_named_function_with_the_record(
    make_dispatcher: MakeDispatcher,
) -> None:
    dispatcher = make_dispatcher()
    event_id = uuid.uuid4().hex
    failing = dispatcher.invoke_async("FailingFunction", {"id": event_id})
    assert dispatcher.wait_idle(30)

    catcher_fn = dispatcher.functions["CatcherFunction"]
    assert failing.outcome == "failed"
    assert failing.destination == f"{catcher_fn.arn}:$LATEST"
    (caught,) = dispatcher.invocations("CatcherFunction")
    assert caught.outcome == "success"
    record = caught.event
    assert caught.result["event"] == record  # the catcher's own environment received it
    assert caught.result["pid"] != os.getpid()
    context = record["requestContext"]
    assert context["requestId"] == failing.request_id
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 1
    assert context["functionArn"] == f"{dispatcher.functions['FailingFunction'].arn}:$LATEST"
    assert record["requestPayload"] == {"id": event_id}
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == f"cannot render {event_id}"
    assert any("app.py" in line for line in record["responsePayload"]["stackTrace"])


# --- a dispatcher that crashes ---------------------------------------------------------------------------


def test_an_abandoned_invoke_is_run_by_the_next_dispatcher_on_the_same_state(
    make_dispatcher: MakeDispatcher, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    crashed = make_dispatcher(state_dir=state)
    event_id = uuid.uuid4().hex
    invocation = crashed.invoke_async("HangOnceFunction", {"id": event_id})
    inbox_file = state / "inbox" / f"{invocation.request_id}.json"
    assert inbox_file.exists()
    marker = tmp_path / f"hung-{event_id}"
    _wait_for(lambda: marker.exists() and marker.read_text() != "")
    hung_pid = int(marker.read_text())

    crashed.stop(abandon=True)
    assert invocation.done.is_set()
    assert invocation.outcome == "abandoned"
    assert crashed.wait_idle(5)
    assert crashed.running() == []
    assert not _alive(hung_pid)
    assert inbox_file.exists()

    successor = make_dispatcher(state_dir=state)
    assert successor.wait_idle(30)
    (rerun,) = successor.invocations()
    assert rerun.request_id == invocation.request_id
    assert rerun.event == {"id": event_id}
    assert rerun.outcome == "success"
    assert rerun.attempts == 1  # the abandoned attempt never ended, so it does not count
    assert rerun.result["pid"] != hung_pid
    assert list((state / "inbox").iterdir()) == []


def test_uploads_while_no_dispatcher_ran_are_delivered_once(
    make_dispatcher: MakeDispatcher, local_stack: LocalStack, faults: Faults, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    prefix = f"uploads/{uuid.uuid4().hex[:8]}/"

    def put(name: str) -> str:
        local_stack.s3.put_object(Bucket=faults.bucket, Key=prefix + name, Body=name.encode())
        return prefix + name

    def run(replay: bool = False) -> tuple[Dispatcher, list[str]]:
        calls: list[str] = []

        def record(event: dict[str, Any], context: LambdaContext) -> None:
            calls.append(event["detail"]["object"]["key"])

        dispatcher = make_dispatcher(
            state_dir=state,
            poll=True,
            poll_interval=0.05,
            prefix=prefix,
            replay_existing=replay,
            overrides={"UploadFunction": record},
        )
        assert dispatcher.wait_idle(30)
        return dispatcher, calls

    before = put("before.jpg")
    first, first_calls = run(replay=False)
    assert first_calls == []  # the first start passes over what is there, as replay_existing says
    during = put("during.jpg")
    assert first.wait_idle(30)
    assert first_calls == [during]
    first.stop()

    missed = put("missed.jpg")
    second, second_calls = run(replay=True)
    assert second_calls == [missed]  # not `before`, not `during`: replay_existing only counts at first
    second.stop()

    third, third_calls = run()
    assert third_calls == []
    assert third.poll_once() == 0
    delivered = [json.loads(line) for line in (state / "delivered.jsonl").read_text().splitlines()]
    assert sorted(key for _, key, _ in delivered) == sorted([before, during, missed])


# --- memory and concurrency ------------------------------------------------------------------------------


def test_a_function_past_its_memory_size_is_killed_and_the_others_run_on(
    make_dispatcher: MakeDispatcher,
) -> None:
    dispatcher = make_dispatcher()
    within = dispatcher.invoke_async("HogFunction", {"mb": 16})
    assert within.done.wait(30) and within.outcome == "success"
    over = dispatcher.invoke_async("HogFunction", {"mb": 400, "hold": 5})
    echo = dispatcher.invoke_async("EchoFunction", {"n": 1})
    assert over.done.wait(30) and echo.done.wait(30)
    assert over.outcome == "failed" and echo.outcome == "success"
    assert over.error_type == "Runtime.OutOfMemory"
    assert over.error_message is not None and "of its 160 MB" in over.error_message
    assert not _alive(within.result["pid"])  # the environment that ran out went with it
    again = dispatcher.invoke_async("HogFunction", {"mb": 16})
    assert again.done.wait(30) and again.outcome == "success"  # a new environment serves the next


def test_reserved_concurrency_runs_a_function_one_invocation_at_a_time(
    make_dispatcher: MakeDispatcher,
) -> None:
    dispatcher = make_dispatcher(max_workers=3)
    calls = [dispatcher.invoke_async("OneAtATimeFunction", {"seconds": 0.6}) for _ in range(3)]
    assert dispatcher.wait_idle(60)
    assert [c.outcome for c in calls] == ["success"] * 3
    spans = sorted((c.result["started"], c.result["ended"]) for c in calls)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
