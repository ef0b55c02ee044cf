"""Render one incoming object in one style, through the ports: no AWS here, only what the adapters give."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from atelier.cache import CachePolicy, HashIndex, find_reusable, new_entry
from atelier.domain import keys, options, status
from atelier.domain.errors import ImageRejected, JobFailed
from atelier.domain.limits import Limits
from atelier.domain.status import Board
from atelier.imaging import phash
from atelier.imaging.decode import decode
from atelier.imaging.encode import CONTENT_TYPES, encode
from atelier.imaging.probe import Format, probe_reader
from atelier.imaging.styles import Style
from atelier.ports import NotFound, ObjectHead, ObjectStore

Renderer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StyleJob:
    """One style to apply: its name, a fingerprint of its version and parameters, and the renderer.

    ``output_name`` names the render file (default: the style), ``output_format`` forces a format
    (default: the input's), ``requested_as`` is the name an upload asks for it by (default: the style), and
    ``status_fields`` are added to its status item (the upscale's ``factor``).
    """

    name: str
    fingerprint: str
    render: Renderer
    output_name: str = ""
    output_format: Format | None = None
    requested_as: str = ""
    status_fields: Mapping[str, Any] = field(default_factory=dict)


def style_job(style: Style, metadata: Mapping[str, str]) -> StyleJob:
    """The job of a CPU style for one upload: its defaults with the options the object's metadata asks for.

    The options (``strength``) come from :func:`atelier.domain.options.style_options`, and reach the
    fingerprint, so the near-duplicate cache and the idempotency key tell a render at 0.3 from one at
    0.8. Invalid options raise JobFailed (``invalid_option``) with a message that names the metadata at fault.
    """
    try:
        overrides = options.style_options(metadata, style.name)
        fingerprint = style.fingerprint(overrides)
    except ValueError as exc:  # InvalidOption, or a value the style itself refuses
        raise JobFailed("invalid_option", str(exc)) from None
    return StyleJob(style.name, fingerprint, functools.partial(style.render, **overrides))


@dataclass(frozen=True)
class Cache:
    """The near-duplicate index and its policy; absent, every upload renders."""

    index: HashIndex
    policy: CachePolicy


@dataclass
class Outcome:
    """What became of one (object, style): the fields of its status item."""

    state: str  # done | rejected | failed (the status item's terminal states) | skipped (nothing written)
    style: str
    image_id: str = ""
    source_key: str = ""
    owner: str = ""
    source_etag: str = ""
    output_key: str = ""
    format: str = ""
    size_bytes: int = 0
    width: int = 0
    height: int = 0
    input_width: int = 0
    input_height: int = 0
    reason: str = ""
    message: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # hit, source_image_id, distance, reason
    warnings: list[str] = field(default_factory=list)  # what the decoder found odd but harmless
    preview_key: str = ""  # the render's preview rendition (keys.preview_key)
    extra: dict[str, Any] = field(default_factory=dict)  # the job's own fields (StyleJob.status_fields)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without empty fields, the job's own fields beside the others."""
        fields = {k: v for k, v in asdict(self).items() if k != "extra" and v not in ("", 0, {}, [], None)}
        return {**fields, **self.extra}


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = round((now - self.last) * 1000.0, 1)
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.marks, "total": round((time.perf_counter() - self.start) * 1000.0, 1)}


def render_object(
    store: ObjectStore,
    board: Board,
    key: str,
    etag: str,
    job: StyleJob,
    limits: Limits,
    deadline_at: int,
    cache: Cache | None = None,
    head: ObjectHead | None = None,
    claimed: bool = False,
) -> Outcome:
    """Render ``key`` (the version whose ETag is ``etag``) with ``job``; record its status on ``board``.

    The job is claimed first (``rendering`` until ``deadline_at``, when the caller's invocation ends at
    the latest) unless the caller ``claimed`` it already; a job already finished is skipped. An input that
    can never render ends ``rejected`` and returns normally, so it is not retried. Store errors propagate:
    the caller decides whether to retry. ``head`` is the object's HeadObject answer when the caller already
    has it.
    """
    clock = _Clock()
    if head is None:
        try:
            head = store.head(key)
        except NotFound:
            return Outcome(
                "skipped", job.name, source_key=key, message="the object was deleted before it was read"
            )
    if etag and head.etag != etag:
        return Outcome(
            "skipped", job.name, source_key=key, message="the object was replaced; the newer upload renders"
        )
    upload = keys.describe(key, head.etag, head.metadata)
    if (job.requested_as or job.name) not in upload.styles:
        return Outcome("skipped", job.name, upload.image_id, key, upload.owner, message="style not requested")
    outcome = Outcome("rendering", job.name, upload.image_id, key, upload.owner, head.etag)
    outcome.extra = dict(job.status_fields)
    fields = {**status.job_fields(upload, head.etag, head.metadata), **job.status_fields}
    if not claimed and not board.rendering(upload.image_id, job.name, deadline_at, fields):
        outcome.state, outcome.message = "skipped", "already finished"
        return outcome

    started_at = int(board.clock())  # the claim's time, within the second: the status keeps it to the end

    def record(o: Outcome) -> Outcome:
        item = {**o.as_dict(), "job": fields["job"], "style_fingerprint": job.fingerprint}
        board.finish(o.image_id, o.style, {**item, "started_at": started_at})
        return o

    try:
        info = probe_reader(lambda n: store.read_range(key, 0, n), head.size, limits)
        outcome.input_width, outcome.input_height = info.display_size
        clock.mark("probe")
        data = store.read(key, expected_etag=head.etag)
        clock.mark("read")
        decoded = decode(data, limits, info)
        info = decoded.info  # the orientation may be at the end of the file (a WebP's EXIF)
        outcome.input_width, outcome.input_height = info.display_size
        outcome.warnings = list(decoded.warnings)
        clock.mark("decode")
        fmt = job.output_format or info.format
        out_key = keys.render_key(upload.image_id, job.output_name or job.name, fmt)
        reuse = None
        if cache is not None:
            digest = hashlib.sha256(data).hexdigest()
            query = (upload.owner, f"{job.fingerprint}.{fmt}", phash.phash(decoded.bgr), digest)
            clock.mark("phash")
            decision = find_reusable(cache.index, *query, cache.policy)
            clock.mark("lookup")
            if decision.candidate is not None:
                reuse = decision.candidate.entry
                copied = _copy_render(store, reuse.render_key, out_key, upload.image_id, job, fmt, limits)
                # None: the earlier render is gone, so render again and point the entry at the new one
                if copied is not None:
                    try:  # its preview too, where the earlier render has one
                        store.copy(
                            keys.preview_key(reuse.render_key),
                            keys.preview_key(out_key),
                            {"image-id": upload.image_id},
                            CONTENT_TYPES["webp"],
                        )
                        outcome.preview_key = keys.preview_key(out_key)
                    except NotFound:
                        pass
                    clock.mark("copy")
                    outcome.state, outcome.output_key, outcome.format = "done", out_key, fmt
                    outcome.size_bytes, (outcome.width, outcome.height) = copied
                    outcome.cache = {
                        "hit": True,
                        "source_image_id": reuse.image_id,
                        "distance": decision.candidate.distance,
                        "reason": decision.reason,
                    }
                    outcome.timings_ms = clock.total()
                    return record(outcome)
            outcome.cache = {"hit": False}
        del data
        art = job.render(decoded.bgr)
        clock.mark("render")
        body = encode(art, fmt, alpha=decoded.alpha)
        clock.mark("encode")
    except ImageRejected as rejected:
        outcome.state, outcome.reason, outcome.message = "rejected", rejected.reason, rejected.message
        outcome.timings_ms = clock.total()
        return record(outcome)
    height, width = int(art.shape[0]), int(art.shape[1])
    store.put(out_key, body, CONTENT_TYPES[fmt], _render_metadata(upload.image_id, job, (width, height)))
    clock.mark("write")
    small, small_alpha = preview_of(art, decoded.alpha)
    preview = encode(small, "webp", alpha=small_alpha, quality=PREVIEW_QUALITY)
    store.put(keys.preview_key(out_key), preview, CONTENT_TYPES["webp"], {"image-id": upload.image_id})
    outcome.preview_key = keys.preview_key(out_key)
    clock.mark("preview")
    if cache is not None:
        if reuse is not None:
            cache.index.replace(reuse, out_key, upload.image_id)
        else:
            cache.index.put(new_entry(*query, upload.image_id, out_key, cache.policy))
        clock.mark("index")
    outcome.state = "done"
    outcome.output_key = out_key
    outcome.format = fmt
    outcome.size_bytes = len(body)
    outcome.width, outcome.height = width, height
    outcome.timings_ms = clock.total()
    return record(outcome)


PREVIEW_QUALITY = 80


def preview_of(art: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The render (and its alpha) at most keys.PREVIEW_SIDE on its long side, for tiles and lists."""
    height, width = art.shape[:2]
    scale = keys.PREVIEW_SIDE / max(height, width)
    if scale >= 1:
        return art, alpha
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(art, size, interpolation=cv2.INTER_AREA)
    if alpha is not None and alpha.shape[:2] == (height, width):
        return small, cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    return small, None


def _render_metadata(image_id: str, job: StyleJob, size: tuple[int, int]) -> dict[str, str]:
    return {
        "image-id": image_id,
        "style": job.name,
        "style-fingerprint": job.fingerprint,
        "width": str(size[0]),
        "height": str(size[1]),
    }


def _copy_render(
    store: ObjectStore,
    source_key: str,
    dest_key: str,
    image_id: str,
    job: StyleJob,
    fmt: Format,
    limits: Limits,
) -> tuple[int, tuple[int, int]] | None:
    """Copy an earlier render server-side with its Content-Type: (bytes, (width, height)), None if it is gone.

    Its size is in its metadata (one HeadObject); a render stored without it has its header read instead.
    """
    try:
        head = store.head(source_key)
        meta = {k.lower(): v for k, v in head.metadata.items()}
        if meta.get("width", "").isdigit() and meta.get("height", "").isdigit():
            size = int(meta["width"]), int(meta["height"])
        else:
            info = probe_reader(lambda n: store.read_range(source_key, 0, n), head.size, limits)
            size = info.width, info.height
        store.copy(source_key, dest_key, _render_metadata(image_id, job, size), CONTENT_TYPES[fmt])
    except (NotFound, ImageRejected):
        return None
    return head.size, size
