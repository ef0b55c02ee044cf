"""A warm Lambda execution environment for the local dispatcher: one function, imported once, in a child.

Started as ``python -m atelier_dev.local.runtime MODULE.ATTR`` with the function's code folder on
``PYTHONPATH``.
Requests arrive one JSON line at a time on stdin; answers leave one JSON line at a time on the original
stdout, which is moved aside first: the handler's own output (Powertools' Logger prints) goes to stderr.

The first line written is ``{"ready": true, "pid": ...}`` once the handler's module is imported (Lambda's
init), or ``{"initError": {...}}`` after which the process exits. A request is
``{"requestId", "event", "functionName", "functionArn", "memoryLimitInMB", "timeout", "deadlineMs"}``;
its answer ``{"requestId", "result"}`` or ``{"requestId", "error": {errorType, errorMessage, stackTrace}}``.
The process exits when stdin closes.
"""

from __future__ import annotations

import decimal
import importlib
import io
import json
import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import IO, Any

# Go's wording for the signals, as Lambda's "Runtime exited with error: signal: ..." has it.
_SIGNAL_WORDS = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGINT: "interrupt",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
}


def exit_message(returncode: int | None) -> str:
    """Lambda's errorMessage for a runtime process that ended with ``returncode`` (negative: a signal)."""
    if returncode is None or returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"Runtime exited with error: signal: {-returncode}"
        return f"Runtime exited with error: signal: {_SIGNAL_WORDS.get(sig, sig.name)}"
    return f"Runtime exited with error: exit status {returncode}"


def error_payload(error_type: str, message: str, stack_trace: list[str] | None = None) -> dict[str, Any]:
    """An error as the Lambda runtime reports it."""
    return {"errorType": error_type, "errorMessage": message, "stackTrace": list(stack_trace or [])}


def _exception_payload(exc: BaseException) -> dict[str, Any]:
    stack = [line.rstrip("\n") for line in traceback.format_tb(exc.__traceback__)]
    return error_payload(type(exc).__name__, str(exc), stack)


class LambdaContext:
    """The context object a handler receives in the child: as ``dispatcher.LambdaContext``, from a request."""

    def __init__(self, request: dict[str, Any], log_stream_name: str) -> None:
        self.function_name: str = request["functionName"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = request["functionArn"]
        self.memory_limit_in_mb: int = int(request["memoryLimitInMB"])
        self.aws_request_id: str = request["requestId"]
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = float(request["deadlineMs"])

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout."""
        return max(0, int(self._deadline_ms - time.time() * 1000))


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


class InitError(Exception):
    """The handler could not be loaded: the runtime's errorType, errorMessage and stackTrace."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.payload = error_payload(error_type, message, stack_trace)


def load_handler(handler: str) -> Callable[[Any, Any], Any]:
    """Import ``MODULE.ATTR`` as Lambda's Python runtime does; raises :class:`InitError` as it reports."""
    try:
        module_name, attr = handler.rsplit(".", 1)
    except ValueError as exc:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}") from exc
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        trace = [f'File "{exc.filename}" Line {exc.lineno}\n\t{exc.text}']
        raise InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", trace
        ) from exc
    function = getattr(module, attr, None)
    if function is None:
        raise InitError("Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{module_name}'")
    loaded: Callable[[Any, Any], Any] = function
    return loaded


def _write(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message, cls=_Encoder).encode() + b"\n")
    out.flush()


def serve(handler: str, requests: IO[bytes], responses: IO[bytes]) -> int:
    """Load ``handler``, say ready (or the init error), then answer requests until ``requests`` closes."""
    try:
        function = load_handler(handler)
    except InitError as exc:
        _write(responses, {"initError": exc.payload})
        return 1
    except Exception as exc:
        _write(responses, {"initError": _exception_payload(exc)})
        return 1
    _write(responses, {"ready": True, "pid": os.getpid()})
    log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        answer: dict[str, Any] = {"requestId": request["requestId"]}
        try:
            result = function(request["event"], LambdaContext(request, log_stream))
        except Exception as exc:
            answer["error"] = _exception_payload(exc)
        else:
            try:
                json.dumps(result, cls=_Encoder)
                answer["result"] = result
            except (TypeError, ValueError) as exc:
                answer["error"] = error_payload("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        sys.stdout.flush()
        sys.stderr.flush()
        _write(responses, answer)
    return 0


def _protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Move the request pipe (fd 0) and the answer pipe (fd 1) aside; stdout then writes to stderr."""
    requests = os.fdopen(os.dup(0), "rb")
    responses = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    return requests, responses


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m atelier_dev.local.runtime MODULE.ATTR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m atelier_dev.local.runtime MODULE.ATTR", file=sys.stderr)
        return 2
    requests, responses = _protocol_streams()
    return serve(args[0], requests, responses)


if __name__ == "__main__":
    sys.exit(main())
