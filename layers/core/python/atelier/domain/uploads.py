"""Uploads through the API: request checks, the object key, the POST policy and the image record (AWS-free).

A photo uploaded for several styles is one object under ``incoming/all/u/<owner>/<image-id>/<file>``; its
image id, owner and styles travel in the object's metadata, which the POST policy pins with exact-match
conditions, so the style handlers (see :func:`atelier.domain.keys.describe`) render only what was
asked for. The policy also pins the file's length to the size the request declared.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from atelier.domain import keys, options
from atelier.domain.limits import Limits
from atelier.domain.options import InvalidOption

CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/webp": (".webp",),
}
MAX_FILENAME_CHARS = 255  # what a file system allows; longer is not a file name
KEY_FILENAME_CHARS = 100  # what the key keeps of it
REQUEST_FIELDS = frozenset({"filename", "content_type", "size", "styles", "options"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE = re.compile(r"[^\w .()+,=@-]", re.UNICODE)  # kept: letters, digits, and a few harmless marks


@dataclass(frozen=True)
class UploadSettings:
    """How long a POST policy and a download URL last (read from the environment by atelier.config)."""

    upload_minutes: int = 10
    download_minutes: int = 15


class UploadRefused(ValueError):
    """A request that can never be granted: the code, a message a person can act on, and the field."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


@dataclass(frozen=True)
class UploadRequest:
    """A checked ``POST /uploads`` request."""

    filename: str  # sanitised: what the key and the status record hold
    content_type: str
    size: int
    styles: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadPlan:
    """Where one upload goes and the policy that binds it: the form fields and the policy conditions."""

    image_id: str
    owner: str
    key: str
    request: UploadRequest
    max_bytes: int
    expires_in: int
    fields: dict[str, str]
    conditions: list[Any]


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


def sanitize_filename(name: str) -> str:
    """A file name safe inside a key: its last path part, NFC, harmless characters, at most 100 characters.

    Raise UploadRefused for a name that is empty, too long, holds control characters, or has nothing left.
    """
    if not isinstance(name, str) or not name.strip():
        raise UploadRefused("bad_filename", "the file name is empty", "filename")
    if len(name) > MAX_FILENAME_CHARS:
        raise UploadRefused(
            "bad_filename", f"the file name is over {MAX_FILENAME_CHARS} characters", "filename"
        )
    if _CONTROL.search(name):
        raise UploadRefused("bad_filename", "the file name holds control characters", "filename")
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name))[-1]
    safe = re.sub(r"\s+", " ", _UNSAFE.sub("_", base)).strip(" .")
    if not re.search(r"[^\W_]", safe, re.UNICODE):
        raise UploadRefused("bad_filename", f"the file name {name!r} has no usable characters", "filename")
    if len(safe) > KEY_FILENAME_CHARS:
        stem, dot, ext = safe.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            safe = stem[: KEY_FILENAME_CHARS - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            safe = safe[:KEY_FILENAME_CHARS].rstrip(" .")
    return safe


def _styles(value: Any, accepted: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise UploadRefused("invalid_request", "styles must be a non-empty list of style names", "styles")
    chosen: list[str] = []
    for name in value:
        if not isinstance(name, str):
            raise UploadRefused("invalid_request", "styles must be a list of style names", "styles")
        if name not in accepted:
            raise UploadRefused(
                "unknown_style", f"unknown style {name!r}; choose from {', '.join(accepted)}", "styles"
            )
        if name in chosen:
            raise UploadRefused("invalid_request", f"style {name!r} is listed twice", "styles")
        chosen.append(name)
    return tuple(chosen)


def _options(value: Any, styles: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise UploadRefused("invalid_request", "options must be an object keyed by style", "options")
    out: dict[str, dict[str, Any]] = {}
    for style, given in value.items():
        if style not in styles:
            raise UploadRefused("invalid_option", f"options for {style!r}, a style not requested", "options")
        try:
            out[style] = options.check(style, given)
        except InvalidOption as exc:
            raise UploadRefused("invalid_option", exc.message, "options") from None
    return out


def parse_request(body: Any, accepted_styles: Sequence[str], limits: Limits) -> UploadRequest:
    """Check a ``POST /uploads`` body against the caps; raise UploadRefused saying what is wrong."""
    if not isinstance(body, dict):
        raise UploadRefused("invalid_request", "the body must be a JSON object")
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise UploadRefused("invalid_request", f"unknown field(s): {', '.join(unknown)}", unknown[0])
    for name in ("filename", "content_type", "size", "styles"):
        if name not in body:
            raise UploadRefused("invalid_request", f"{name} is required", name)
    if not isinstance(body["filename"], str):
        raise UploadRefused("invalid_request", "filename must be a string", "filename")
    filename = sanitize_filename(body["filename"])
    content_type = body["content_type"]
    if not isinstance(content_type, str) or content_type.lower() not in CONTENT_TYPES:
        raise UploadRefused(
            "unsupported_type",
            f"content type {content_type!r} is not accepted; send {', '.join(CONTENT_TYPES)}",
            "content_type",
        )
    size = body["size"]
    if isinstance(size, bool) or not isinstance(size, int):
        raise UploadRefused("invalid_request", "size must be an integer number of bytes", "size")
    if size < 1:
        raise UploadRefused("invalid_request", "size must be at least 1 byte", "size")
    if size > limits.max_bytes:
        raise UploadRefused(
            "too_large_bytes",
            f"the file is {_human_bytes(size)}, over the cap of {_human_bytes(limits.max_bytes)}",
            "size",
        )
    styles = _styles(body["styles"], accepted_styles)
    options = _options(body["options"], styles) if "options" in body else {}
    return UploadRequest(filename, content_type.lower(), size, styles, options)


def owner_id(subject: str) -> str:
    """The owner as keys and metadata hold it: the JWT ``sub`` itself, or a digest of it if it is odd."""
    if not subject:
        raise UploadRefused("unauthorized", "the request carries no identity", status=401)
    if keys.is_owner_id(subject):
        return subject
    return "h-" + hashlib.sha256(subject.encode()).hexdigest()[:40]


def new_image_id() -> str:
    """A fresh image id: the 32 hex digits of a uuid4."""
    return uuid.uuid4().hex


def upload_key(owner: str, image_id: str, filename: str, styles: Sequence[str] = ()) -> str:
    """``incoming/all[-upscale]/u/<owner>/<image-id>/<file>``: one object for every style requested.

    Only an upload that asks for the upscale goes under ``all-upscale/``, the prefix that reaches the GPU
    workers' queue, so no other upload wakes them.
    """
    segment = keys.ALL_UPSCALE if keys.UPSCALE in styles else keys.ALL
    return f"{keys.INCOMING}{segment}/u/{owner}/{image_id}/{filename}"


def plan_upload(
    request: UploadRequest, owner: str, limits: Limits, expires_in: int, image_id: str | None = None
) -> UploadPlan:
    """The key, the form fields and the POST policy conditions of one upload."""
    image_id = image_id or new_image_id()
    if not keys.is_image_id(image_id):
        raise ValueError(f"{image_id!r} is not a valid image id")
    if not 1 <= request.size <= limits.max_bytes:
        raise ValueError(f"declared size {request.size} is outside 1..{limits.max_bytes} bytes")
    metadata = {
        "x-amz-meta-image-id": image_id,
        "x-amz-meta-owner": owner,
        "x-amz-meta-styles": ",".join(request.styles),
    }
    if request.options:
        metadata["x-amz-meta-options"] = json.dumps(request.options, sort_keys=True, separators=(",", ":"))
    fields = {"Content-Type": request.content_type, **metadata}
    conditions: list[Any] = [
        # exactly the declared size, not up to the cap: S3 answers EntityTooLarge or EntityTooSmall otherwise
        ["content-length-range", request.size, request.size],
        ["starts-with", "$Content-Type", "image/"],
        *({name: value} for name, value in metadata.items()),
    ]
    key = upload_key(owner, image_id, request.filename, request.styles)
    return UploadPlan(image_id, owner, key, request, limits.max_bytes, expires_in, fields, conditions)


def image_record(plan: UploadPlan) -> dict[str, Any]:
    """The image's own status item (:meth:`atelier.domain.status.Board.grant`): who, what, until when."""
    image: dict[str, Any] = {
        "owner": plan.owner,
        "styles": list(plan.request.styles),
        "filename": plan.request.filename,
        "content_type": plan.request.content_type,
        "declared_bytes": plan.request.size,
        "source_key": plan.key,
    }
    if plan.request.options:
        image["options"] = {k: dict(v) for k, v in plan.request.options.items()}
    return image
