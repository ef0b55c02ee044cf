"""Stands in for S3's EventBridge notifications and Lambda's asynchronous invoke on the local stack.

Handlers run in threads of this process (``isolation="thread"``), or in warm execution environments, child
processes of :mod:`atelier_dev.local.runtime` (``isolation="process"``) that can time out, crash and be killed
as Lambda's do. With a ``state_dir`` the objects already delivered and the accepted invokes outlive the
dispatcher, as S3's notifications and Lambda's asynchronous queue outlive a crash.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal
from urllib.parse import quote_plus

import psutil

import atelier
from atelier.entrypoints import Handler
from atelier_dev.local import overlaid
from atelier_dev.local.cfn import FunctionSpec, LocalTemplate
from atelier_dev.local.pattern import matches
from atelier_dev.local.runtime import exit_message

log = logging.getLogger(__name__)

Isolation = Literal["thread", "process"]

# The folder that holds the ``atelier`` package, for the children's PYTHONPATH.
PACKAGE_ROOT = Path(atelier.__file__).resolve().parent.parent
# Lambda's limit on the init phase of an on-demand environment (longer when the function's Timeout is).
INIT_TIMEOUT = 10.0
SEEN_FILE = "delivered.jsonl"
INBOX_DIR = "inbox"


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

    def __init__(self, fn: FunctionSpec, request_id: str, *, timeout: float | None = None) -> None:
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
        self._deadline = time.monotonic() + (fn.timeout if timeout is None else timeout)

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


class InvokeError(Exception):
    """A failed attempt as the Lambda runtime reports it: errorType, errorMessage, stackTrace."""

    def __init__(self, error_type: str, message: str, stack_trace: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_message = message
        self.stack_trace = list(stack_trace or [])

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> InvokeError:
        """The error of a runtime's ``{errorType, errorMessage, stackTrace}``."""
        trace = payload.get("stackTrace")
        return cls(
            str(payload.get("errorType") or "Unhandled"),
            str(payload.get("errorMessage") or ""),
            [str(line) for line in trace] if isinstance(trace, list) else None,
        )


class _Retry(Exception):
    """An attempt failed with retries left: run the next one after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class _Abandoned(BaseException):
    """The dispatcher was stopped with ``abandon=True`` while an attempt ran: leave its bookkeeping alone."""


class _Environment:
    """A warm execution environment: a child process serving one function, one request at a time."""

    def __init__(self, function: str, proc: subprocess.Popen[bytes]) -> None:
        self.function = function
        self.proc = proc
        self.pid = proc.pid
        self.busy = True
        self.invocation: Invocation | None = None
        self.last_used = time.monotonic()
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"atelier-env-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def receive(self, timeout: float, request_id: str | None = None) -> dict[str, Any] | None:
        """The next message (for ``request_id``, when given); None once the child closed its end.

        Raises :class:`queue.Empty` when nothing came within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                self._lines.put(None)
                return None
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("environment %d wrote a line that is not JSON: %r", self.pid, line[:200])
                continue
            if not isinstance(message, dict):
                continue
            if request_id is None or message.get("requestId") == request_id:
                return message

    def send(self, message: Mapping[str, Any]) -> bool:
        """Write one request; False when the child is gone."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message, default=str).encode() + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def kill(self) -> bool:
        """SIGKILL the child and whatever it started; False if it had already ended."""
        if self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        return True

    def exit_message(self, timeout: float = 5.0) -> str:
        """Lambda's errorMessage for this child's end (waiting for it to end)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait()
        return exit_message(code)

    def close(self, timeout: float = 5.0) -> None:
        """End the child (stdin closes, so it returns; SIGKILL after ``timeout``), release its pipes."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        self._reader.join(timeout=1)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdout.close()


def _version(etag: str, modified: Any) -> str:
    """An object version as polling tells them apart: its ETag and when it was written."""
    stamp = modified.isoformat() if hasattr(modified, "isoformat") else str(modified or "")
    return f"{etag.strip(chr(34))}@{stamp}"


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _MemoryWatch:
    """Kill an environment whose memory (its processes' resident set) passes the function's MemorySize
    while it runs an invocation, as Lambda ends a sandbox that runs out of memory. Sampled every 50 ms: a
    spike shorter than that can pass unseen. An address-space limit would be exact but is not Lambda's
    measure: ONNX Runtime reserves the anime function's arena up front (atelier.inference.sessions), so
    its address space is several times what it uses, and such a limit would refuse work Lambda runs."""

    INTERVAL = 0.05

    def __init__(self, env: _Environment, memory_mb: int) -> None:
        self.env = env
        self.limit = memory_mb << 20
        self.peak = 0
        self.exceeded = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"memory-watch-{env.pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.env.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.wait(self.INTERVAL):
            try:
                used = sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, used)
            if used > self.limit:
                self.exceeded = True
                self.env.kill()
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=1)


class Dispatcher:
    """Polls the bucket for new objects, routes S3 events by the template's patterns, invokes handlers.

    ``isolation="thread"`` runs handlers in this process's threads; ``"process"`` runs each function in
    warm child processes (at most ``max_environments`` in all, by default twice ``max_workers``, the
    invocations that run at once) that are killed when an attempt outlives the
    function's Timeout (``function_timeouts`` overrides it by function, in seconds). Handler overrides
    always run in threads. ``state_dir`` keeps the objects delivered and the accepted invokes on disk, so
    a later dispatcher on it neither repeats the first nor loses the second.
    """

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
        max_environments: int | None = None,
        replay_existing: bool = False,
        apply_env: bool = True,
        isolation: Isolation = "thread",
        function_timeouts: Mapping[str, float] | None = None,
        state_dir: str | Path | None = None,
        memory_limits: bool = True,
    ) -> None:
        if isolation not in ("thread", "process"):
            raise ValueError(f"isolation must be 'thread' or 'process', got {isolation!r}")
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
        self.isolation: Isolation = isolation
        self.memory_limits = memory_limits and isolation == "process"
        self.max_workers = max_workers
        self.max_environments = max_environments or 2 * max_workers
        self.functions: dict[str, FunctionSpec] = {fn.logical_id: fn for fn in template.functions()}
        self.function_timeouts = {
            self.resolve_function(name): float(seconds) for name, seconds in (function_timeouts or {}).items()
        }
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.routes = self._build_routes()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="atelier-lambda")
        self._cond = threading.Condition()
        self._pending = 0
        self._active: dict[str, Invocation] = {}
        self._timers: dict[str, threading.Timer] = {}  # request id -> its next attempt
        self._generation = 0
        self._polling = False
        self._abandoned = False
        self._seen: set[tuple[str, str, str]] = set()
        self._seen_lock = threading.Lock()
        self._seen_file_lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._deliveries: list[QueueDelivery] = []
        self._overrides: dict[str, Handler] = {}
        self._modules: dict[str, ModuleType] = {}
        self._load_lock = threading.Lock()
        self._queue_urls: dict[str, str] = {}
        self._envs: list[_Environment] = []
        self._envs_cond = threading.Condition()
        self._starting = 0
        self._starting_of: dict[str, int] = {}  # environments being started, by function
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._env_scope: contextlib.ExitStack | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Dispatcher:
        """Apply the environment (if asked), load the state, queue the inbox again, start polling.

        Objects present now are delivered when ``replay_existing`` says so; with a ``state_dir`` that a
        dispatcher used before, those not delivered yet (uploads while none ran) are, whatever it says.
        """
        if self.apply_env and self._env_scope is None:
            self._env_scope = contextlib.ExitStack()
            self._env_scope.enter_context(overlaid(os.environ, self.env))
        if not self._load_seen():
            existing = [] if self.replay_existing else [(b, k, e) for b, k, e, _size in self._list_objects()]
            with self._seen_lock:
                self._seen.update(existing)
            if self._seen_path is not None:
                _write_atomic(self._seen_path, "".join(json.dumps(list(k)) + "\n" for k in existing))
        self._requeue_inbox()
        if self.poll_enabled and self.buckets:
            self._polling = True
            self._poller = threading.Thread(target=self._poll_loop, name="atelier-dispatcher", daemon=True)
            self._poller.start()
        return self

    def stop(self, abandon: bool = False) -> None:
        """Stop polling, let running invocations finish, end the environments, restore the environment.

        ``abandon=True`` plays a crash of the dispatcher: every child is killed at once and the running
        invocations end as ``"abandoned"``, unfinished; their inbox files stay for the next dispatcher.
        """
        self._stop.set()
        if abandon:
            self._abandoned = True
            with self._envs_cond:
                self._envs_cond.notify_all()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None
        with self._cond:
            self._polling = False
            self._cond.notify_all()
        with self._cond:
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:  # retries not yet due: their invocations end abandoned, kept in the inbox
            timer.cancel()
        if abandon:
            self._end_environments(kill=True)
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            unfinished = list(self._active.values())
        for invocation in unfinished:  # cancelled before they ran, or abandoned while running
            self._finish(invocation, "abandoned")
        self._end_environments(kill=abandon)
        if self._env_scope is not None:
            self._env_scope.close()  # restores what the environment held before start()
            self._env_scope = None

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
        bucket = event["detail"]["bucket"]["name"]
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        modified = listed[0].get("LastModified") if listed and listed[0]["Key"] == key else None
        seen = (bucket, key, _version(event["detail"]["object"]["etag"], modified))
        with self._seen_lock:
            self._seen.add(seen)
        invocations = self.emit(event)
        self._persist_seen([seen])
        return invocations

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
        sys.modules[module_name] = module
        try:
            with overlaid(os.environ, {**self.env, **fn.environment}):
                spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module

    # --- execution environments ----------------------------------------------------------------------

    def running(self) -> list[tuple[Invocation, int]]:
        """Invocations whose attempt is in progress in an execution environment, with the child's pid."""
        with self._envs_cond:
            return [(env.invocation, env.pid) for env in self._envs if env.invocation is not None]

    def kill(self, request_id: str) -> bool:
        """SIGKILL the environment serving ``request_id`` (a crash mid-invoke); False if none serves it."""
        with self._envs_cond:
            env = next(
                (e for e in self._envs if e.invocation is not None and e.invocation.request_id == request_id),
                None,
            )
        return env is not None and env.kill()

    def _call_environment(self, fn: FunctionSpec, invocation: Invocation) -> Any:
        """One attempt in a warm environment of ``fn``: its result, else :class:`InvokeError`."""
        timeout = self.timeout_of(fn.logical_id)
        env = self._acquire(fn)
        keep = False
        try:
            request = {
                "requestId": invocation.request_id,
                "event": invocation.event,
                "functionName": fn.name,
                "functionArn": fn.arn,
                "memoryLimitInMB": fn.memory_size,
                "timeout": timeout,
                "deadlineMs": int((time.time() + timeout) * 1000),
            }
            with self._envs_cond:
                env.invocation = invocation
            if not env.send(request):
                self._check_abandoned()
                raise InvokeError("Runtime.ExitError", env.exit_message())
            watch = _MemoryWatch(env, fn.memory_size) if self.memory_limits else None
            try:
                answer = env.receive(timeout, invocation.request_id)
            except queue.Empty:
                env.kill()
                self._check_abandoned()
                raise InvokeError("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds") from None
            finally:
                if watch is not None:
                    watch.stop()
            self._check_abandoned()
            if answer is None and watch is not None and watch.exceeded:
                raise InvokeError(
                    "Runtime.OutOfMemory",
                    f"Runtime exited with error: signal: killed (it used {watch.peak >> 20} MB of its "
                    f"{fn.memory_size} MB)",
                )
            if answer is None:
                raise InvokeError("Runtime.ExitError", env.exit_message())
            keep = True
            if "error" in answer:
                raise InvokeError.from_payload(answer["error"])
            return answer.get("result")
        finally:
            self._release(env, keep=keep)

    def _acquire(self, fn: FunctionSpec) -> _Environment:
        """An idle environment of ``fn``, else a new one (an idle one of another function makes room).

        A function with ReservedConcurrentExecutions runs in at most that many environments at once; an
        invocation past it waits for one of them (Lambda throttles it, and retries it for an async invoke).
        """
        victims: list[_Environment] = []
        env: _Environment | None = None
        with self._envs_cond:
            while True:
                self._check_abandoned()
                dead = [e for e in self._envs if not e.busy and e.proc.poll() is not None]
                victims += dead
                self._envs = [e for e in self._envs if e not in dead]
                idle = [e for e in self._envs if not e.busy]
                warm = [e for e in idle if e.function == fn.logical_id]
                running = sum(e.busy for e in self._envs if e.function == fn.logical_id)
                running += self._starting_of.get(fn.logical_id, 0)
                if fn.reserved_concurrency is not None and running >= fn.reserved_concurrency:
                    self._envs_cond.wait(timeout=1.0)
                    continue
                if warm:
                    env = max(warm, key=lambda e: e.last_used)
                    env.busy = True
                    break
                if len(self._envs) + self._starting < self.max_environments:
                    self._starting += 1
                    self._starting_of[fn.logical_id] = self._starting_of.get(fn.logical_id, 0) + 1
                    break
                if idle:
                    victim = min(idle, key=lambda e: e.last_used)
                    self._envs.remove(victim)
                    victims.append(victim)
                    self._starting += 1
                    self._starting_of[fn.logical_id] = self._starting_of.get(fn.logical_id, 0) + 1
                    break
                self._envs_cond.wait(timeout=1.0)
        for victim in victims:
            victim.close()
        if env is not None:
            return env
        try:
            return self._spawn(fn)
        finally:
            with self._envs_cond:
                self._starting -= 1
                self._starting_of[fn.logical_id] -= 1
                self._envs_cond.notify_all()

    def _spawn(self, fn: FunctionSpec) -> _Environment:
        """Start an environment of ``fn`` and wait for its init (the handler's module imported)."""
        env_vars = {**os.environ, **self.env, **fn.environment}
        paths = [str(fn.code_dir), str(PACKAGE_ROOT)]
        if env_vars.get("PYTHONPATH"):
            paths.append(env_vars["PYTHONPATH"])
        env_vars["PYTHONPATH"] = os.pathsep.join(paths)
        proc = subprocess.Popen(
            [sys.executable, "-m", "atelier_dev.local.runtime", fn.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=fn.code_dir,
            env=env_vars,
            start_new_session=True,
        )
        env = _Environment(fn.logical_id, proc)
        with self._envs_cond:
            self._envs.append(env)
        keep = False
        try:
            self._check_abandoned()
            limit = max(INIT_TIMEOUT, self.timeout_of(fn.logical_id))
            try:
                ready = env.receive(limit)
            except queue.Empty:
                env.kill()
                raise InvokeError("Sandbox.Timedout", f"Init timed out after {limit:.2f} seconds") from None
            self._check_abandoned()
            if ready is None:
                raise InvokeError("Runtime.ExitError", env.exit_message())
            if "initError" in ready:
                raise InvokeError.from_payload(ready["initError"])
            keep = True
            log.debug("%s: environment %d ready", fn.logical_id, env.pid)
            return env
        finally:
            if not keep:
                self._release(env, keep=False)

    def _release(self, env: _Environment, *, keep: bool) -> None:
        """Make ``env`` idle again, or (``keep=False``) discard it."""
        with self._envs_cond:
            env.invocation = None
            env.busy = False
            env.last_used = time.monotonic()
            if not keep and env in self._envs:
                self._envs.remove(env)
            self._envs_cond.notify_all()
        if not keep:
            env.kill()
            env.close()

    def _end_environments(self, *, kill: bool) -> None:
        """End every environment (SIGKILL when ``kill``, else idle ones close their stdin and return)."""
        with self._envs_cond:
            envs = list(self._envs) if kill else [e for e in self._envs if not e.busy]
            self._envs = [e for e in self._envs if e not in envs]
            self._envs_cond.notify_all()
        if kill:
            for env in envs:
                env.kill()
        for env in envs:
            env.close()

    # --- invoke ------------------------------------------------------------------------------------------

    def invoke_async(self, function: str, event: Mapping[str, Any]) -> Invocation:
        """Queue an asynchronous invoke (with retries and destinations), as Lambda's Event invoke does."""
        fn = self.functions[self.resolve_function(function)]
        invocation = Invocation(fn.logical_id, fn.name, str(uuid.uuid4()), copy.deepcopy(dict(event)))
        self._accept(fn, invocation)
        return invocation

    def _accept(self, fn: FunctionSpec, invocation: Invocation, *, keep_if_refused: bool = False) -> None:
        """Write the invoke to the inbox, then queue it; a refusal (after stop) raises unless kept."""
        self._save(invocation, invocation.attempts)
        with self._records_lock:
            self._invocations.append(invocation)
        with self._cond:
            self._pending += 1
            self._active[invocation.request_id] = invocation
        try:
            self._pool.submit(self._run, fn, invocation)
        except RuntimeError:
            if not keep_if_refused:
                self._forget(invocation)
            self._finish(invocation, "abandoned")
            if not keep_if_refused:
                raise

    def timeout_of(self, function: str) -> float:
        """Seconds an attempt of ``function`` may run: its Timeout, or the override given for it."""
        fn = self.functions[self.resolve_function(function)]
        return self.function_timeouts.get(fn.logical_id, float(fn.timeout))

    def _run(self, fn: FunctionSpec, invocation: Invocation) -> None:
        scheduled = False
        try:
            self._attempts(fn, invocation)
        except _Retry as retry:
            # the next attempt waits on a timer, not in a worker: other invocations run meanwhile
            scheduled = self._schedule(fn, invocation, retry.delay)
        except Exception:
            log.exception("dispatcher failure while invoking %s", fn.logical_id)
            if invocation.outcome == "pending":
                invocation.outcome = "failed"
        finally:
            if not scheduled:
                self._finish(invocation, invocation.outcome)

    def _schedule(self, fn: FunctionSpec, invocation: Invocation, delay: float) -> bool:
        """Run the invocation's next attempt in ``delay`` seconds; False if stopping (it ends abandoned)."""

        def fire() -> None:
            with self._cond:
                self._timers.pop(invocation.request_id, None)
            if self._stop.is_set():
                self._finish(invocation, "abandoned")
                return
            try:
                self._pool.submit(self._run, fn, invocation)
            except RuntimeError:  # the pool shut down meanwhile: the inbox keeps it
                self._finish(invocation, "abandoned")

        with self._cond:
            if self._stop.is_set():
                return False
            timer = threading.Timer(delay, fire)
            timer.daemon = True
            self._timers[invocation.request_id] = timer
        timer.start()
        return True

    def _check_abandoned(self) -> None:
        if self._abandoned:
            raise _Abandoned

    def _attempts(self, fn: FunctionSpec, invocation: Invocation) -> None:
        for attempt in range(invocation.attempts + 1, fn.max_retry_attempts + 2):
            self._check_abandoned()
            if time.time() - invocation.started_at > fn.max_event_age:
                self._fail(fn, invocation, "EventAgeExceeded")
                return
            invocation.attempts = attempt
            try:
                result = self._call(fn, invocation)
            except Exception as exc:
                self._check_abandoned()
                if isinstance(exc, InvokeError):
                    invocation.error_type, invocation.error_message = exc.error_type, exc.error_message
                else:
                    invocation.error_type, invocation.error_message = type(exc).__name__, str(exc)
                invocation.errors.append(f"{invocation.error_type}: {invocation.error_message}")
                log.warning(
                    "%s attempt %d failed: %s: %s",
                    fn.logical_id,
                    attempt,
                    invocation.error_type,
                    invocation.error_message,
                )
                self._save(invocation, attempt)
                if attempt <= fn.max_retry_attempts:
                    raise _Retry(self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]) from None
                self._fail(fn, invocation, "RetriesExhausted", exc)
                return
            self._check_abandoned()
            invocation.outcome = "success"
            invocation.result = result
            if fn.on_success is not None:
                record = self._destination_record(fn, invocation, "Success", result)
                invocation.destination = self._send_destination(fn.on_success.arn, record)
            return
        self._fail(fn, invocation, "RetriesExhausted")  # queued again with no attempt left

    def _call(self, fn: FunctionSpec, invocation: Invocation) -> Any:
        """One attempt: an override or a thread-isolated handler here, else in an execution environment."""
        override = self._overrides.get(fn.logical_id)
        if override is None and self.isolation == "process":
            return self._call_environment(fn, invocation)
        handler = override if override is not None else self.handler_for(fn.logical_id)
        context = LambdaContext(fn, invocation.request_id, timeout=self.timeout_of(fn.logical_id))
        return handler(copy.deepcopy(invocation.event), context)

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
        if isinstance(exc, InvokeError):
            payload["stackTrace"] = exc.stack_trace
        elif exc is not None:
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

    def function_for_arn(self, arn: str) -> FunctionSpec | None:
        """The function an ARN names (a trailing ``:$LATEST`` qualifier is ignored), if it is here."""
        unqualified = arn.removesuffix(":$LATEST")
        return next((fn for fn in self.functions.values() if fn.arn == unqualified), None)

    def _send_destination(self, arn: str, record: Mapping[str, Any]) -> str | None:
        if arn.startswith("arn:aws:lambda:"):
            target = self.function_for_arn(arn)
            if target is None:
                log.warning("destination %s is not a function of this template", arn)
                return None
            invocation = Invocation(
                target.logical_id, target.name, str(uuid.uuid4()), copy.deepcopy(dict(record))
            )
            self._accept(target, invocation, keep_if_refused=True)
            return arn
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
        """Record the end of an invocation once; an abandoned one keeps its inbox file."""
        with self._cond:
            if invocation.finished_at is not None:
                return
            if self._abandoned:
                outcome = "abandoned"
            invocation.outcome = outcome
            invocation.finished_at = time.time()
            self._active.pop(invocation.request_id, None)
        if outcome != "abandoned":
            self._forget(invocation)
        invocation.done.set()
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    # --- polling -----------------------------------------------------------------------------------------

    def _list_objects(self) -> Iterator[tuple[str, str, str, int]]:
        """(bucket, key, version, size) of every watched object; the version is its ETag and its time, so
        a copy onto itself with new metadata (same bytes, same ETag) is a new object, as S3's event says."""
        for bucket in self.buckets:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.prefix:
                kwargs["Prefix"] = self.prefix
            for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
                for obj in page.get("Contents", []):
                    version = _version(obj["ETag"], obj.get("LastModified"))
                    yield bucket, obj["Key"], version, int(obj.get("Size", 0))

    def poll_once(self) -> int:
        """List the watched prefix once and deliver an event for every object version not seen before."""
        count = 0
        for bucket, key, version, size in self._list_objects():
            with self._seen_lock:
                if (bucket, key, version) in self._seen:
                    continue
                self._seen.add((bucket, key, version))
            etag = version.split("@", 1)[0]
            event = object_created_event(
                bucket, key, size=size, etag=etag, region=self.template.region, account=self.template.account
            )
            self.emit(event)
            self._persist_seen([(bucket, key, version)])
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

    # --- durable state -------------------------------------------------------------------------------

    @property
    def _seen_path(self) -> Path | None:
        return self.state_dir / SEEN_FILE if self.state_dir is not None else None

    @property
    def _inbox_dir(self) -> Path | None:
        return self.state_dir / INBOX_DIR if self.state_dir is not None else None

    def _load_seen(self) -> bool:
        """Read the objects delivered by earlier dispatchers; False on the first start (no state yet)."""
        path, inbox = self._seen_path, self._inbox_dir
        if path is None or inbox is None:
            return False
        inbox.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            return False
        seen: set[tuple[str, str, str]] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                bucket, key, etag = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line cut short by a crash
            seen.add((str(bucket), str(key), str(etag)))
        with self._seen_lock:
            self._seen.update(seen)
        return True

    def _persist_seen(self, keys: Iterable[tuple[str, str, str]]) -> None:
        path = self._seen_path
        lines = "".join(json.dumps(list(k)) + "\n" for k in keys)
        if path is None or not lines:
            return
        with self._seen_file_lock, path.open("a", encoding="utf-8") as out:
            out.write(lines)

    def _save(self, invocation: Invocation, attempts: int) -> None:
        """Write an accepted invoke and the attempts it made so far to the inbox."""
        inbox = self._inbox_dir
        if inbox is None:
            return
        record = {
            "version": 1,
            "function": invocation.function,
            "requestId": invocation.request_id,
            "received": invocation.started_at,
            "attempts": attempts,
            "errorType": invocation.error_type,
            "errorMessage": invocation.error_message,
            "event": invocation.event,
        }
        _write_atomic(inbox / f"{invocation.request_id}.json", json.dumps(record, default=str))

    def _forget(self, invocation: Invocation) -> None:
        inbox = self._inbox_dir
        if inbox is not None:
            (inbox / f"{invocation.request_id}.json").unlink(missing_ok=True)

    def _requeue_inbox(self) -> None:
        """Queue again every invoke an earlier dispatcher accepted and did not finish."""
        inbox = self._inbox_dir
        if inbox is None:
            return
        for tmp in inbox.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        records = []
        for path in inbox.glob("*.json"):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                fn = self.functions[record["function"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("inbox %s is left in place: %s", path.name, exc)
                continue
            records.append((float(record.get("received") or 0.0), fn, record))
        for received, fn, record in sorted(records, key=lambda r: r[0]):
            invocation = Invocation(
                fn.logical_id,
                fn.name,
                str(record["requestId"]),
                dict(record["event"]),
                attempts=int(record.get("attempts") or 0),
                error_type=record.get("errorType"),
                error_message=record.get("errorMessage"),
                started_at=received or time.time(),
            )
            log.info("%s: invoke %s queued again from the inbox", fn.logical_id, invocation.request_id)
            self._accept(fn, invocation)

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
