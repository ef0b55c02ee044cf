"""Ports: the object store and the status store the core talks to, and the errors adapters raise.

Adapters (S3, DynamoDB, SQS) live in :mod:`atelier.adapters.aws` and turn the SDK's errors into these;
they are tested under moto and against the local stack's servers. The other ports (the pHash index,
:class:`atelier.cache.HashIndex`; the job queue, :class:`atelier.worker.JobQueue`) have in-memory fakes in
tests/fakes.py, typed against them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class StoreError(Exception):
    """A store refused a request for a reason that a retry will not change."""


class TransientStoreError(StoreError):
    """Throttling, a timeout or a 5xx: the same request may well succeed later."""


class NotFound(StoreError):
    """The object or item does not exist."""


@dataclass(frozen=True)
class ObjectHead:
    """What HeadObject says of an object."""

    key: str
    size: int
    etag: str
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    """The few object-store calls the pipeline needs."""

    def head(self, key: str) -> ObjectHead:
        """Size, ETag and user metadata of ``key``; NotFound if absent."""
        ...

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``start`` .. ``start + length - 1`` of ``key`` (fewer at the end of the object)."""
        ...

    def read(self, key: str, expected_etag: str | None = None) -> bytes:
        """The whole object; with ``expected_etag``, NotFound if it has been replaced meanwhile."""
        ...

    def put(
        self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Write ``key``."""
        ...

    def copy(
        self,
        source_key: str,
        dest_key: str,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "",
    ) -> None:
        """Server-side copy (no bytes pass through the caller); NotFound if the source is gone.

        Given ``metadata`` or ``content_type``, the copy has these instead of the source's: give both, as
        a copy with new metadata and no content type is served as ``binary/octet-stream``.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...


class StatusStore(Protocol):
    """One status item per (image, style)."""

    def put_status(
        self,
        image_id: str,
        style: str,
        item: Mapping[str, Any],
        *,
        unless_state: Sequence[str] = (),
        unless_job: str = "",
    ) -> bool:
        """Create or replace the status of ``style`` for ``image_id``.

        With ``unless_state``, not if the item is in one of those states (and, with ``unless_job``, holds
        that ``job`` key): one conditional write, atomic. False when the item was left as it was.
        """
        ...

    def put_many(self, image_id: str, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Create or replace several items of ``image_id`` (style, item) in one batch."""
        ...

    def get_status(self, image_id: str) -> list[dict[str, Any]]:
        """Every item of ``image_id`` (one per style, plus the image's own record if it has one)."""
        ...

    def list_images(self, owner: str, limit: int, cursor: str | None = None) -> tuple[list[str], str | None]:
        """Up to ``limit`` of ``owner``'s image ids, newest first, from ``cursor`` (a previous call's second
        value; None from the start); the cursor of the next page, None after the last. A cursor that is
        not one raises ValueError."""
        ...


class DeadLetters(Protocol):
    """Where the record of a failed job goes, for a person (or a redrive) to act on."""

    def send(self, record: Mapping[str, Any]) -> None:
        """Keep ``record`` (JSON-ready)."""
        ...
