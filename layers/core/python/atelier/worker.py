"""A queue worker that never loses a message: lease, heartbeat, delete only after the render is stored.

- Each message is leased for ``visibility`` seconds and the lease is extended every ``heartbeat``
  seconds while the job runs, so a long render is never handed to a second worker.
- A job that ends (done, or rejected: an input that will never render) deletes its message.
- A job that fails releases its message for a retry after ``retry_delay`` seconds; the queue's redrive
  policy moves a message that keeps failing (a poison message) to the dead-letter queue after
  ``max_receives`` receives. The failure of the last receive is reported to ``on_failure`` first (the
  status item says ``failed``), so the job ends for its user as its message leaves the queue.
- A job that can never run (JobFailed: a model that is not there) is reported to ``on_failure`` and its
  message moved to the dead-letter queue at once, without a retry.
- SIGTERM (a Spot interruption, a scale-in) stops taking new messages and shortens the current lease to
  ``grace`` seconds: the job finishes and deletes its message, or, if the process is killed first, the
  message is visible again within ``grace`` seconds. Either way it is never lost.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from atelier.domain.errors import JobFailed
from atelier.ports import TransientStoreError

log = logging.getLogger("atelier.worker")


@dataclass(frozen=True)
class Message:
    """One leased queue message."""

    id: str
    receipt: str
    body: str
    receive_count: int = 1


class JobQueue(Protocol):
    """The queue calls the worker needs."""

    def receive(self, visibility: int) -> list[Message]:
        """Wait for a message and lease it."""
        ...

    def extend(self, message: Message, seconds: int) -> None:
        """Set the lease to end ``seconds`` from now."""
        ...

    def delete(self, message: Message) -> None:
        """Remove the message for good."""
        ...

    def dead_letter(self, message: Message) -> None:
        """Move the message to the dead-letter queue now."""
        ...


Job = Callable[[dict[str, Any]], dict[str, Any]]
# Told of a job that will not be retried: its message body, the reason code and what went wrong.
FailureHandler = Callable[[str, str, str], None]


@dataclass
class Stats:
    """What a worker run did."""

    done: int = 0
    released: int = 0
    failed: int = 0  # reported to on_failure: a permanent failure, or the last receive failed
    results: list[dict[str, Any]] = field(default_factory=list)


class Worker:
    """Consume ``queue`` with ``job`` until stopped (or until the queue is idle, when asked)."""

    def __init__(
        self,
        queue: JobQueue,
        job: Job,
        *,
        visibility: int = 300,
        heartbeat: float = 60.0,
        retry_delay: int = 30,
        grace: int = 20,
        max_receives: int | None = None,
        on_failure: FailureHandler | None = None,
    ) -> None:
        self.queue = queue
        self.job = job
        self.max_receives = max_receives
        self.on_failure = on_failure
        self.visibility = visibility
        self.heartbeat = heartbeat
        self.retry_delay = retry_delay
        self.grace = grace
        self.stats = Stats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: Message | None = None

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.request_stop())

    def request_stop(self) -> None:
        """Take no new message; put the current one on a short lease so it comes back if we die."""
        self._stop.set()
        with self._lock:
            current = self._current
        if current is not None:
            try:
                self.queue.extend(current, self.grace)
            except Exception:  # the lease simply runs its course
                log.exception("could not shorten the lease of %s", current.id)
        log.info("stop requested; finishing the current job")

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    def run(self, *, max_jobs: int | None = None, until_idle: bool = False) -> Stats:
        """Process messages until stopped, ``max_jobs`` are handled, or (``until_idle``) none arrives."""
        handled = 0
        while not self._stop.is_set() and (max_jobs is None or handled < max_jobs):
            messages = self.queue.receive(self.visibility)
            if not messages:
                if until_idle:
                    break
                continue
            for message in messages:
                self.handle(message)
                handled += 1
        return self.stats

    def handle(self, message: Message) -> None:
        """Run one job under a heartbeat; delete on an outcome, release on a failure."""
        with self._lock:
            self._current = message
        beat = threading.Event()
        thread = threading.Thread(target=self._beat, args=(message, beat), daemon=True)
        thread.start()
        try:
            result = self.job(json.loads(message.body))
        except JobFailed as exc:
            beat.set()
            thread.join()
            log.warning("job %s cannot run: %s", message.id, exc)
            self._report(message, exc.reason, exc.message)
            self.queue.dead_letter(message)
            return
        except Exception as exc:
            beat.set()
            thread.join()
            kind = "transient" if isinstance(exc, TransientStoreError) else "failed"
            log.warning("job %s %s (receive %d): %s", message.id, kind, message.receive_count, exc)
            if self.max_receives is not None and message.receive_count >= self.max_receives:
                self._report(message, "retries_exhausted", f"{exc} (after {message.receive_count} attempts)")
            self._release(message)
            return
        finally:
            with self._lock:
                self._current = None
        beat.set()
        thread.join()
        self.queue.delete(message)
        self.stats.done += 1
        self.stats.results.append(result)
        log.info("job %s %s", message.id, result.get("state"))

    def _report(self, message: Message, reason: str, text: str) -> None:
        self.stats.failed += 1
        if self.on_failure is None:
            return
        try:
            self.on_failure(message.body, reason, text)
        except Exception:  # the message still reaches the dead-letter queue; its status ends timed out
            log.exception("could not report the failure of %s", message.id)

    def _beat(self, message: Message, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat):
            if self._stop.is_set():
                return  # the lease was shortened to the grace period; do not lengthen it again
            try:
                self.queue.extend(message, self.visibility)
            except Exception:
                log.exception("could not extend the lease of %s", message.id)

    def _release(self, message: Message) -> None:
        self.stats.released += 1
        try:
            self.queue.extend(message, 0 if self._stop.is_set() else self.retry_delay)
        except Exception:
            log.exception("could not release %s; it comes back when its lease ends", message.id)
