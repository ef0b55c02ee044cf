"""The bucket's key scheme: where photos arrive, where renders go, and how an upload is named.

    incoming/<style>/<any/path>/<file>     drop-in, one style (sketch, pencil, oil, watercolor, ...)
    incoming/all/<any/path>/<file>         drop-in, every CPU style from this one object
    incoming/all-upscale/<any/path>/<file> every CPU style and the GPU upscale (only upscale uploads
                                           reach the GPU workers' queue, so nothing else wakes them)
    renders/<image-id>/<style>.<ext>       the renders; nothing under renders/ triggers anything

An upload through the API carries its image id, owner and styles in the object's metadata
(x-amz-meta-image-id, -owner, -styles), which the presigned POST policy pins. A drop-in gets an image id
made of its file name and a digest of its key and ETag: readable, and never shared by two uploads.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from atelier.imaging.probe import EXTENSIONS

INCOMING = "incoming/"
RENDERS = "renders/"
PREVIEWS = f"{RENDERS}previews/"  # under renders/, so every grant that reads or writes renders covers them
PREVIEW_SIDE = 1280  # the long side of a preview rendition, at most
ALL = "all"
# What ``incoming/all/`` (and an upload that names no styles) renders: the four CPU styles. The styles
# themselves live in atelier.imaging.styles, whose CPU_STYLES a test holds equal to this.
ALL_STYLES: tuple[str, ...] = ("sketch", "pencil", "oil", "watercolor")
ALL_UPSCALE = "all-upscale"
UPSCALE = "upscale"
DROP_IN_OWNER = "bucket"  # the scope that every drop-in upload shares: the bucket owner's

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{5,63}$")
_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def is_image_id(value: str) -> bool:
    """Whether ``value`` has the form of an image id (what the API hands out and keys are built from)."""
    return bool(_ID_RE.match(value))


def is_owner_id(value: str) -> bool:
    """Whether ``value`` has the form of an owner id (safe in a key and in a status item)."""
    return bool(_OWNER_RE.match(value))


@dataclass(frozen=True)
class Upload:
    """Who and what an incoming object is, from its key and metadata."""

    key: str
    image_id: str
    owner: str
    styles: frozenset[str]
    filename: str


def is_incoming(key: str) -> bool:
    """Whether a key lies where uploads land."""
    return key.startswith(INCOMING)


def describe(
    key: str, etag: str, metadata: Mapping[str, str], all_styles: Iterable[str] = ALL_STYLES
) -> Upload:
    """Read an incoming object's image id, owner and requested styles."""
    if not is_incoming(key):
        raise ValueError(f"{key!r} is not under {INCOMING}")
    parts = key[len(INCOMING) :].split("/")
    if len(parts) < 2 or not parts[-1]:
        raise ValueError(f"{key!r} has no style folder: expected {INCOMING}<style>/<file>")
    segment, filename = parts[0], parts[-1]
    meta = {k.lower(): v for k, v in metadata.items()}
    image_id = meta.get("image-id", "")
    if not is_image_id(image_id):
        image_id = drop_in_image_id(key, etag)
    owner = meta.get("owner", "")
    if not is_owner_id(owner):
        owner = DROP_IN_OWNER
    known = tuple(all_styles)
    if meta.get("styles"):
        styles = frozenset(s.strip() for s in meta["styles"].split(",") if s.strip())
    elif segment == ALL:
        styles = frozenset(known)
    elif segment == ALL_UPSCALE:
        styles = frozenset((*known, UPSCALE))
    else:
        styles = frozenset([segment])
    return Upload(key, image_id, owner, styles, filename)


def job_key(etag: str, metadata: Mapping[str, str]) -> str:
    """What one job of an object is: its bytes (ETag) and its metadata (the options it asks for).

    A copy of the same event has the same key; the same bytes with new metadata (a new strength) do not,
    so they are a new job, not a replay of one that has ended.
    """
    meta = sorted((k.lower(), v) for k, v in metadata.items())
    return hashlib.sha256(repr((etag, meta)).encode()).hexdigest()[:20]


def drop_in_image_id(key: str, etag: str) -> str:
    """A readable, collision-free id: the file's stem and ten hex digits of sha256(key, etag)."""
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_stem).strip("-").lower()[:40] or "photo"
    digest = hashlib.sha256(f"{key}\x00{etag}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def render_key(image_id: str, style: str, fmt: str) -> str:
    """Where the render of ``image_id`` in ``style`` is stored."""
    return f"{RENDERS}{image_id}/{style}.{EXTENSIONS.get(fmt, fmt)}"


def preview_key(render: str) -> str:
    """Where the preview rendition of the render at ``render`` is stored (a WebP of at most 1280 px)."""
    image_id, name = render.removeprefix(RENDERS).split("/", 1)
    return f"{PREVIEWS}{image_id}/{name.rsplit('.', 1)[0]}.webp"
