"""The status of every job: one item per (image, style), five states, and the view clients read.

    pending    granted by the upload API, or waiting for a retry after a transient error
    rendering  a handler has the job; ``deadline_at`` is when its invocation ends at the latest
    done       the render is stored (``output_key``)
    failed     the job cannot finish: a permanent fault (a model that is not installed, an option no render
               honours), its retries exhausted, or its handler gone past its deadline; ``reason`` says which
    rejected   the photo itself can never render (too large, corrupt, not an image)

Every writer (the style handlers, anime, the GPU worker, the upload API, the dead-letter marker) goes through
:class:`Board`, over the :class:`~atelier.ports.StatusStore` port. The terminal states are final: a late
claim, a late failure or a duplicate event leaves them as they are (only a new grant starts a job again).
A handler that dies leaves ``rendering`` behind; :func:`effective` reports it ``failed`` (``timed_out``)
once its deadline has passed, so no job stays ``rendering``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from atelier.domain.keys import Upload, job_key
from atelier.ports import StatusStore

STATES = ("pending", "rendering", "done", "failed", "rejected")  # the order a job goes through them
TERMINAL: tuple[str, ...] = ("done", "failed", "rejected")
IMAGE_RECORD = "#image"  # the item of the image itself, beside one item per style

# Why a job failed (the photo's own reasons, for ``rejected``, are atelier.domain.errors.REASONS).
FAILURE_REASONS: dict[str, str] = {
    "model_unavailable": "the model is not installed",
    "model_unpinned": "the model has no pinned SHA-256",
    "model_mismatch": "the model file does not match its pinned SHA-256",
    "invalid_option": "an option no render can honour",
    "retries_exhausted": "every retry failed",
    "event_expired": "the event waited too long for a handler",
    "timed_out": "the render stopped before it finished",
}
# A pending job no handler took within this long (after its upload window closed, or after the transient
# error it waits on) is reported timed out: past the event's maximum age (an hour) and every retry.
PENDING_GRACE_SECONDS = 3 * 3600


class Board:
    """Writes every status item through one StatusStore, with the expiry (TTL) and times filled in."""

    def __init__(self, store: StatusStore, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def _stamp(self, item: Mapping[str, Any]) -> dict[str, Any]:
        now = int(self.clock())
        return {**item, "updated_at": now, "expires_at": now + self.ttl_seconds}

    def grant(
        self, image_id: str, image: Mapping[str, Any], styles: Sequence[str], upload_seconds: int
    ) -> None:
        """An upload granted: the image record and a ``pending`` item per style, in one batch."""
        now = int(self.clock())
        deadline = now + upload_seconds + PENDING_GRACE_SECONDS
        owner = image.get("owner", "")
        record = {**image, "created_at": now, "upload_expires_at": now + upload_seconds}
        if owner:
            record["listing_owner"] = owner  # GET /images lists it (the table's ByOwner index)
        items = [(IMAGE_RECORD, self._stamp(record))]
        items += [(style, self._stamp(_pending(owner, now, deadline))) for style in styles]
        self.store.put_many(image_id, items)

    def _unless_ended(self, image_id: str, style: str, item: Mapping[str, Any]) -> bool:
        job = str(item.get("job", ""))
        return self.store.put_status(
            image_id, style, self._stamp(item), unless_state=TERMINAL, unless_job=job
        )

    def again(self, image_id: str, style: str, owner: str) -> None:
        """A failed style asked for again: ``pending`` once more, until the new event's handler claims it
        (a new job: the object's metadata changes with each retry, so the job key does too)."""
        now = int(self.clock())
        self.store.put_status(image_id, style, self._stamp(_pending(owner, now, now + PENDING_GRACE_SECONDS)))

    def images(self, owner: str, limit: int, cursor: str | None = None) -> tuple[list[str], str | None]:
        """``owner``'s uploads, newest first, a page at a time (see StatusStore.list_images)."""
        return self.store.list_images(owner, limit, cursor)

    def rendering(self, image_id: str, style: str, deadline_at: int, fields: Mapping[str, Any]) -> bool:
        """A handler took the job; False (and nothing written) when this job has already ended.

        ``fields`` name the job (``job``: :func:`atelier.domain.keys.job_key`) and its object.
        """
        item = {**fields, "state": "rendering", "started_at": int(self.clock()), "deadline_at": deadline_at}
        return self._unless_ended(image_id, style, item)

    def retrying(self, image_id: str, style: str, message: str, fields: Mapping[str, Any]) -> bool:
        """A transient error: the job waits for its retry, saying what went wrong."""
        deadline = int(self.clock()) + PENDING_GRACE_SECONDS
        item = {**fields, "state": "pending", "last_error": message, "deadline_at": deadline}
        return self._unless_ended(image_id, style, item)

    def finish(self, image_id: str, style: str, item: Mapping[str, Any]) -> None:
        """A handler's own end: ``done``, ``rejected`` or ``failed`` with the item's fields."""
        if item.get("state") not in TERMINAL:
            raise ValueError(f"{item.get('state')!r} is not a terminal state")
        self.store.put_status(image_id, style, self._stamp(item))

    def fail(self, image_id: str, style: str, reason: str, message: str, fields: Mapping[str, Any]) -> bool:
        """``failed`` with a reason; False (and nothing written) when this job has already ended."""
        if reason not in FAILURE_REASONS:
            raise ValueError(f"{reason!r} is not a failure reason: {', '.join(FAILURE_REASONS)}")
        return self._unless_ended(
            image_id, style, {**fields, "state": "failed", "reason": reason, "message": message}
        )

    def items(self, image_id: str) -> list[dict[str, Any]]:
        """Every item of the image."""
        return self.store.get_status(image_id)


def _pending(owner: str, now: int, deadline_at: int) -> dict[str, Any]:
    """A style's item while it waits for its handler."""
    return {"state": "pending", "owner": owner, "created_at": now, "deadline_at": deadline_at}


def job_fields(upload: Upload, etag: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    """The fields that name a job on its items: its image, object, owner, and job key."""
    return {
        "image_id": upload.image_id,
        "source_key": upload.key,
        "owner": upload.owner,
        "source_etag": etag,
        "job": job_key(etag, metadata),
    }


def effective(item: Mapping[str, Any], now: int) -> dict[str, Any]:
    """The item as it stands at ``now``: a ``rendering`` or ``pending`` job past its deadline is failed."""
    state = str(item.get("state", "pending"))
    deadline = item.get("deadline_at")
    if state in ("rendering", "pending") and isinstance(deadline, int | float) and now > deadline:
        what = "its handler stopped (crashed or timed out)" if state == "rendering" else "no handler took it"
        return {
            **item,
            "state": "failed",
            "reason": "timed_out",
            "message": f"the render did not finish: {what}; it may be retried",
        }
    return dict(item)


def _iso(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def download_name(filename: str, style: str, output_key: str) -> str:
    """The name a render downloads as: ``<stem>-<style>.<ext of the render>``."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    ext = output_key.rsplit(".", 1)[-1] if "." in output_key.rsplit("/", 1)[-1] else "img"
    return f"{stem}-{style}.{ext}"


def view(image_id: str, items: Iterable[Mapping[str, Any]], owner: str, now: int) -> dict[str, Any] | None:
    """What ``GET /images/{id}`` answers, without URLs; None when the image is unknown or someone else's."""
    by_style = {str(item.get("style")): item for item in items}
    image = by_style.get(IMAGE_RECORD)
    if image is None or image.get("owner") != owner:
        return None
    filename = str(image.get("filename", ""))
    styles: list[dict[str, Any]] = []
    started = False
    for style in image.get("styles", []):
        raw = by_style.get(style, {})
        started = started or bool(raw.get("source_key")) or raw.get("state", "pending") != "pending"
        item = effective(raw, now)
        state = str(item.get("state", "pending"))
        entry: dict[str, Any] = {"style": style, "state": state}
        for name in ("model", "trained", "factor"):
            if name in item:
                entry[name] = item[name]
        if item.get("started_at"):
            entry["started_at"] = _iso(item["started_at"])
        if state in TERMINAL and raw.get("state") in TERMINAL and raw.get("updated_at"):
            entry["finished_at"] = _iso(raw["updated_at"])
        if state == "done":
            output_key = str(item.get("output_key", ""))
            entry.update(
                output_key=output_key,
                download_name=download_name(filename, style, output_key),
                format=item.get("format", ""),
                width=int(item.get("width", 0)),
                height=int(item.get("height", 0)),
                size_bytes=int(item.get("size_bytes", 0)),
            )
            if item.get("warnings"):
                entry["warnings"] = [str(w) for w in item["warnings"]]
            if item.get("preview_key"):
                entry["preview_key"] = str(item["preview_key"])  # the API turns it into preview_url
        elif state in ("rejected", "failed"):
            entry.update(reason=str(item.get("reason", "") or state), message=str(item.get("message", "")))
        elif item.get("last_error"):
            entry["last_error"] = str(item["last_error"])
        styles.append(entry)
    if not started and now > int(image.get("upload_expires_at", now)):
        overall = "upload_expired"  # nothing was uploaded in time: nothing will render
    elif styles and all(s["state"] in TERMINAL for s in styles):
        overall = "complete"
    elif started:
        overall = "processing"
    else:
        overall = "awaiting_upload"
    view = {
        "image_id": image_id,
        "state": overall,
        "filename": filename,
        "created_at": _iso(image.get("created_at")),
        "styles": styles,
    }
    if started and image.get("source_key"):
        view["source_key"] = str(image["source_key"])  # the API turns it into original_url
    return view
