"""Stands in for S3's EventBridge notifications and Lambda's asynchronous invoke on the local stack."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

from atelier.local import overlaid
from atelier.local.cfn import FunctionSpec, LocalTemplate
from atelier.local.pattern import matches

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


def encode_key(key: str) -> str:
    """An object key as S3 writes it into events: spaces as ``+``, non-ASCII and specials percent-encoded."""
    return quote_plus(key, safe="/")


def _iso_now(ms: bool = False) -> str:
    now = datetime.now(UTC)
    if ms:
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def object_created_event(
    bucket: str,
    key: str,
    *,
    size: int,
    etag: str,
    region: str = "us-east-1",
    account: str = "000000000000",
    version_id: str | None = None,
    reason: str = "PutObject",
    sequencer: str | None = None,
) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for a new object."""
    obj: dict[str, Any] = {"key": encode_key(key), "size": int(size), "etag": etag.strip('"')}
    if version_id and version_id != "null":
        obj["version-id"] = version_id
    obj["sequencer"] = sequencer or f"{time.time_ns():018X}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": _iso_now(),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": secrets.token_hex(8).upper(),
            "requester": account,
            "source-ip-address": "127.0.0.1",
            "reason": reason,
        },
    }


class LambdaContext:
    """The context object a Python Lambda handler receives, enough for Powertools and handlers."""

    def __init__(self, fn: FunctionSpec, request_id: str) -> None:
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory_size
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{fn.name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + fn.timeout

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    """One asynchronous invoke of a function, with all its attempts."""

    function: str
    function_name: str
    request_id: str
    event: dict[str, Any]
    attempts: int = 0
    outcome: str = "pending"
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    errors: list[str] = field(default_factory=list)
    destination: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def key(self) -> str | None:
        """The (URL-encoded) object key of an S3 event, if it is one."""
        obj = (self.event.get("detail") or {}).get("object") or {}
        return obj.get("key")


@dataclass
class QueueDelivery:
    """An event an ``AWS::Events::Rule`` sent to an SQS target."""

    rule: str
    queue_url: str
    event: dict[str, Any]
    message_id: str | None


@dataclass(frozen=True)
class _Route:
    source: str
    pattern: dict[str, Any]
    function: str | None = None
    queue_arn: str | None = None


class Dispatcher:
    """Polls the bucket for new objects, routes S3 events by the template's patterns, invokes handlers."""

    def __init__(
        self,
        template: LocalTemplate,
        *,
        env: Mapping[str, str],
        s3: Any,
        sqs: Any,
        buckets: Sequence[str] | None = None,
        prefix: str | None = "incoming/",
        poll: bool = True,
        poll_interval: float = 0.15,
        retry_delays: Sequence[float] = (0.2, 0.4),
        max_workers: int = 4,
        replay_existing: bool = False,
        apply_env: bool = True,
    ) -> None:
        self.template = template
        self.env = dict(env)
        self.s3 = s3
        self.sqs = sqs
        self.buckets = (
            list(buckets)
            if buckets is not None
            else [b.name for b in template.buckets() if b.eventbridge_enabled]
        )
        self.prefix = prefix
        self.poll_enabled = poll
        self.poll_interval = poll_interval
        self.retry_delays = tuple(retry_delays) or (0.0,)
        self.replay_existing = replay_existing
        self.apply_env = apply_env
        self.functions: dict[str, FunctionSpec] = {fn.logical_id: fn for fn in template.functions()}
        self.routes = self._build_routes()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="atelier-lambda")
        self._cond = threading.Condition()
        self._pending = 0
        self._generation = 0
        self._polling = False
        self._seen: set[tuple[str, str, str]] = set()
        self._seen_lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._deliveries: list[QueueDelivery] = []
        self._overrides: dict[str, Handler] = {}
        self._modules: dict[str, ModuleType] = {}
        self._load_lock = threading.Lock()
        self._queue_urls: dict[str, str] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._saved_env: dict[str, str | None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Dispatcher:
        """Apply the environment (if asked), remember existing objects, start polling."""
        if self.apply_env and self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in self.env}
            os.environ.update(self.env)
        if not self.replay_existing:
            for bucket, key, etag, _size in self._list_objects():
                self._seen.add((bucket, key, etag))
        if self.poll_enabled and self.buckets:
            self._polling = True
            self._poller = threading.Thread(target=self._poll_loop, name="atelier-dispatcher", daemon=True)
            self._poller.start()
        return self

    def stop(self) -> None:
        """Stop polling, let running invocations finish, restore the environment."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None
        with self._cond:
            self._polling = False
            self._cond.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._saved_env is not None:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env = None

    def __enter__(self) -> Dispatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- routing -----------------------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        routes = []
        by_arn = {fn.arn: fn.logical_id for fn in self.functions.values()}
        for fn in self.functions.values():
            for rule in fn.event_rules:
                routes.append(_Route(f"{fn.logical_id}.{rule.name}", rule.pattern, function=fn.logical_id))
        for spec in self.template.rules():
            if not spec.enabled:
                continue
            for arn in spec.target_arns:
                if arn in by_arn:
                    routes.append(_Route(spec.logical_id, spec.pattern, function=by_arn[arn]))
                elif arn.startswith("arn:aws:sqs:"):
                    routes.append(_Route(spec.logical_id, spec.pattern, queue_arn=arn))
                else:
                    log.warning("rule %s: target %s is not played locally", spec.logical_id, arn)
        return routes

    def targets(self, event: Mapping[str, Any]) -> list[str]:
        """Logical ids of the functions, and ARNs of the queues, that ``event`` would reach."""
        out: list[str] = []
        for route in self.routes:
            target = route.function or route.queue_arn
            if target and target not in out and matches(route.pattern, event):
                out.append(target)
        return out

    def emit(self, event: Mapping[str, Any]) -> list[Invocation]:
        """Deliver an event as EventBridge would: invoke every matching function, send to matching queues."""
        invocations: list[Invocation] = []
        invoked: set[str] = set()
        for route in self.routes:
            if not matches(route.pattern, event):
                continue
            if route.function is not None and route.function not in invoked:
                invoked.add(route.function)
                invocations.append(self.invoke_async(route.function, event))
            elif route.queue_arn is not None:
                self._send_to_queue(route.source, route.queue_arn, event)
        return invocations

    def object_event(self, key: str, *, bucket: str | None = None) -> dict[str, Any]:
        """The "Object Created" event for an object that exists now (HeadObject for size and ETag)."""
        bucket = bucket or self._default_bucket()
        head = self.s3.head_object(Bucket=bucket, Key=key)
        return object_created_event(
            bucket,
            key,
            size=head["ContentLength"],
            etag=head["ETag"],
            version_id=head.get("VersionId"),
            region=self.template.region,
            account=self.template.account,
        )

    def dispatch_object(self, key: str, *, bucket: str | None = None) -> list[Invocation]:
        """Deliver the event of an existing object now (and mark it seen so polling does not repeat it)."""
        event = self.object_event(key, bucket=bucket)
        with self._seen_lock:
            self._seen.add((event["detail"]["bucket"]["name"], key, event["detail"]["object"]["etag"]))
        return self.emit(event)

    def _default_bucket(self) -> str:
        if len(self.buckets) != 1:
            raise ValueError("several buckets are watched: name one")
        return self.buckets[0]

    # --- handlers ----------------------------------------------------------------------------------------

    def resolve_function(self, name: str) -> str:
        """A function's logical id from its logical id, physical name, or style (``sketch``)."""
        if name in self.functions:
            return name
        for fn in self.functions.values():
            if name in (fn.name, fn.logical_id.lower()) or fn.logical_id.lower() == f"{name.lower()}function":
                return fn.logical_id
        raise KeyError(f"no function {name!r}; known: {sorted(self.functions)}")

    def override(self, function: str, handler: Handler | None) -> None:
        """Replace a function's handler with ``handler`` (None removes the override)."""
        logical_id = self.resolve_function(function)
        if handler is None:
            self._overrides.pop(logical_id, None)
        else:
            self._overrides[logical_id] = handler

    @contextlib.contextmanager
    def overriding(self, handlers: Mapping[str, Handler]) -> Iterator[Dispatcher]:
        """Override handlers for the duration of a ``with`` block."""
        resolved = {self.resolve_function(name): h for name, h in handlers.items()}
        with overlaid(self._overrides, resolved):
            yield self

    def clear_overrides(self) -> None:
        """Remove every handler override."""
        self._overrides.clear()

    def handler_for(self, logical_id: str) -> Handler:
        """The override, else the function's handler, imported once with the function's environment."""
        override = self._overrides.get(logical_id)
        if override is not None:
            return override
        with self._load_lock:
            module = self._modules.get(logical_id)
            if module is None:
                module = self._import(self.functions[logical_id])
                self._modules[logical_id] = module
        handler: Handler = getattr(module, self.functions[logical_id].handler_attr)
        return handler

    def _import(self, fn: FunctionSpec) -> ModuleType:
        if not fn.handler_file.is_file():
            raise FileNotFoundError(f"{fn.logical_id}: handler file {fn.handler_file} does not exist")
        code_dir = str(fn.code_dir)
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        module_name = f"atelier_local_fn_{fn.logical_id}_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(module_name, fn.handler_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {fn.handler_file}")
        module = importlib.util.module_from_spec(spec)
        function_env = {**self.env, **fn.environment}
        saved = {k: os.environ.get(k) for k in function_env}
        os.environ.update(function_env)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return module

    # --- invoke ------------------------------------------------------------------------------------------

    def invoke_async(self, function: str, event: Mapping[str, Any]) -> Invocation:
        """Queue an asynchronous invoke (with retries and destinations), as Lambda's Event invoke does."""
        fn = self.functions[self.resolve_function(function)]
        invocation = Invocation(fn.logical_id, fn.name, str(uuid.uuid4()), copy.deepcopy(dict(event)))
        with self._records_lock:
            self._invocations.append(invocation)
        with self._cond:
            self._pending += 1
        try:
            self._pool.submit(self._run, fn, invocation)
        except RuntimeError:
            self._finish(invocation, "abandoned")
            raise
        return invocation

    def _run(self, fn: FunctionSpec, invocation: Invocation) -> None:
        try:
            self._attempts(fn, invocation)
        except Exception:
            log.exception("dispatcher failure while invoking %s", fn.logical_id)
            if invocation.outcome == "pending":
                invocation.outcome = "failed"
        finally:
            self._finish(invocation, invocation.outcome)

    def _attempts(self, fn: FunctionSpec, invocation: Invocation) -> None:
        received = time.monotonic()
        for attempt in range(1, fn.max_retry_attempts + 2):
            if time.monotonic() - received > fn.max_event_age:
                self._fail(fn, invocation, "EventAgeExceeded")
                return
            invocation.attempts = attempt
            try:
                handler = self.handler_for(fn.logical_id)
                result = handler(copy.deepcopy(invocation.event), LambdaContext(fn, invocation.request_id))
            except Exception as exc:
                invocation.error_type = type(exc).__name__
                invocation.error_message = str(exc)
                invocation.errors.append(f"{invocation.error_type}: {exc}")
                log.warning(
                    "%s attempt %d failed: %s: %s", fn.logical_id, attempt, invocation.error_type, exc
                )
                if attempt <= fn.max_retry_attempts:
                    delay = self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]
                    self._stop.wait(delay)
                    continue
                self._fail(fn, invocation, "RetriesExhausted", exc)
                return
            invocation.outcome = "success"
            invocation.result = result
            if fn.on_success is not None:
                record = self._destination_record(fn, invocation, "Success", result)
                invocation.destination = self._send_destination(fn.on_success.arn, record)
            return

    def _fail(
        self, fn: FunctionSpec, invocation: Invocation, condition: str, exc: BaseException | None = None
    ) -> None:
        invocation.outcome = "failed"
        if fn.on_failure is None:
            return
        payload: dict[str, Any] = {
            "errorMessage": invocation.error_message or condition,
            "errorType": invocation.error_type or condition,
        }
        if exc is not None:
            payload["stackTrace"] = [line.rstrip("\n") for line in traceback.format_tb(exc.__traceback__)]
        record = self._destination_record(fn, invocation, condition, payload)
        invocation.destination = self._send_destination(fn.on_failure.arn, record)

    def _destination_record(
        self, fn: FunctionSpec, invocation: Invocation, condition: str, payload: Any
    ) -> dict[str, Any]:
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if condition != "Success":
            response["functionError"] = "Unhandled"
        return {
            "version": "1.0",
            "timestamp": _iso_now(ms=True),
            "requestContext": {
                "requestId": invocation.request_id,
                "functionArn": f"{fn.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": invocation.attempts,
            },
            "requestPayload": invocation.event,
            "responseContext": response,
            "responsePayload": payload,
        }

    def _send_destination(self, arn: str, record: Mapping[str, Any]) -> str | None:
        if not arn.startswith("arn:aws:sqs:"):
            log.warning("destination %s is not played locally", arn)
            return None
        url = self._queue_url(arn)
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))
        return url

    def _send_to_queue(self, rule: str, arn: str, event: Mapping[str, Any]) -> None:
        url = self._queue_url(arn)
        response = self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event, default=str))
        with self._records_lock:
            self._deliveries.append(QueueDelivery(rule, url, dict(event), response.get("MessageId")))

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            name = arn.rsplit(":", 1)[-1]
            self._queue_urls[arn] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._queue_urls[arn]

    def _finish(self, invocation: Invocation, outcome: str) -> None:
        invocation.outcome = outcome
        invocation.finished_at = time.time()
        invocation.done.set()
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    # --- polling -----------------------------------------------------------------------------------------

    def _list_objects(self) -> Iterator[tuple[str, str, str, int]]:
        for bucket in self.buckets:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.prefix:
                kwargs["Prefix"] = self.prefix
            for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
                for obj in page.get("Contents", []):
                    yield bucket, obj["Key"], obj["ETag"].strip('"'), int(obj.get("Size", 0))

    def poll_once(self) -> int:
        """List the watched prefix once and deliver an event for every (key, ETag) not seen before."""
        count = 0
        for bucket, key, etag, size in self._list_objects():
            with self._seen_lock:
                if (bucket, key, etag) in self._seen:
                    continue
                self._seen.add((bucket, key, etag))
            event = object_created_event(
                bucket, key, size=size, etag=etag, region=self.template.region, account=self.template.account
            )
            self.emit(event)
            count += 1
        return count

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("dispatcher poll failed: %s", exc)
            with self._cond:
                self._generation += 1
                self._cond.notify_all()
            self._stop.wait(self.poll_interval)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until objects written before this call were noticed and every invocation finished."""
        with self._cond:
            target = self._generation + 2

            def idle() -> bool:
                polled = not self._polling or self._generation >= target
                return polled and self._pending == 0

            return self._cond.wait_for(idle, timeout=timeout)

    # --- records -----------------------------------------------------------------------------------------

    def invocations(self, function: str | None = None) -> list[Invocation]:
        """Every invocation so far (of one function, when named)."""
        with self._records_lock:
            records = list(self._invocations)
        if function is None:
            return records
        logical_id = self.resolve_function(function)
        return [r for r in records if r.function == logical_id]

    def deliveries(self) -> list[QueueDelivery]:
        """Every event sent to an SQS rule target so far."""
        with self._records_lock:
            return list(self._deliveries)

    def clear_records(self) -> None:
        """Forget the recorded invocations and deliveries."""
        with self._records_lock:
            self._invocations.clear()
            self._deliveries.clear()
