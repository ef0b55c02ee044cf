"""Near-duplicate render cache: pHash bands, the index's partition keys, its port and the reuse decision.

A stored render is found again by the pHash of its source: any hash within Hamming distance ``t`` of a
stored one agrees exactly with it on at least one of ``t + 1`` disjoint bands of the 64 bits (pigeonhole),
so a lookup reads ``t + 1`` band buckets (one Query each) and one exact SHA-256 item, however large the
index grows. Every key includes the owner scope and the style fingerprint (style, parameters, model
version); reuse across owners is off unless configured, and then only for byte-identical sources. How an
entry is stored (its item's attributes) is the adapter's: atelier.adapters.aws.dynamo_index.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

HASH_BITS = 64
DEFAULT_THRESHOLD = 6
DEFAULT_TTL_SECONDS = 30 * 24 * 3600


def band_widths(threshold: int) -> list[int]:
    """Widths of the ``threshold + 1`` bands that split 64 bits as evenly as possible, first bands widest."""
    if not 0 <= threshold < HASH_BITS:
        raise ValueError(f"threshold must be in 0..{HASH_BITS - 1}, got {threshold}")
    count = threshold + 1
    base, extra = divmod(HASH_BITS, count)
    return [base + 1 if i < extra else base for i in range(count)]


def bands(phash: int, threshold: int) -> list[int]:
    """The band values of ``phash``, most significant band first."""
    if not 0 <= phash < 1 << HASH_BITS:
        raise ValueError("phash must be an unsigned 64-bit integer")
    out = []
    shift = HASH_BITS
    for width in band_widths(threshold):
        shift -= width
        out.append((phash >> shift) & ((1 << width) - 1))
    return out


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def _part(text: str) -> str:
    """A key component with ``%`` and ``#`` escaped, so that joined components never collide."""
    if not text:
        raise ValueError("key components must not be empty")
    return text.replace("%", "%25").replace("#", "%23")


def hash_hex(phash: int) -> str:
    """Sixteen lowercase hex digits, as ``str(imagehash.phash(...))``."""
    return f"{phash:016x}"


def band_partition_keys(scope: str, style_fp: str, phash: int, threshold: int) -> list[str]:
    """Partition keys of the band buckets that hold (or would hold) ``phash``."""
    widths = band_widths(threshold)
    prefix = f"B{len(widths)}#{_part(scope)}#{_part(style_fp)}"
    return [
        f"{prefix}#{i}#{value:0{(width + 3) // 4}x}"
        for i, (width, value) in enumerate(zip(widths, bands(phash, threshold), strict=True))
    ]


def sha_partition_key(style_fp: str, sha256: str) -> str:
    """Partition key of the exact-bytes item, shared by every owner (reuse across owners is opt-in)."""
    digest = sha256.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("sha256 must be 64 hex digits")
    return f"S#{_part(style_fp)}#{digest}"


@dataclass(frozen=True)
class Entry:
    """One cached render: where it is, what it was made from, and until when it may be reused."""

    scope: str
    style_fp: str
    phash: int
    sha256: str
    image_id: str
    render_key: str
    created_at: int
    expires_at: int


@dataclass(frozen=True)
class Candidate:
    """A stored entry found by a lookup, with its distance to the query hash."""

    entry: Entry
    distance: int
    via: Literal["band", "sha"]


@dataclass
class LookupStats:
    """What a lookup cost: requests sent, items read and their approximate DynamoDB size in bytes."""

    requests: int = 0
    items: int = 0
    bytes: int = 0


@dataclass
class Lookup:
    """Same-scope candidates within the threshold (nearest first) and the exact-bytes entry, if any."""

    candidates: list[Candidate] = field(default_factory=list)
    exact: Candidate | None = None
    stats: LookupStats = field(default_factory=LookupStats)


@dataclass(frozen=True)
class CachePolicy:
    """How near is near enough, how long entries live, and whether owners may share byte-identical renders."""

    threshold: int = DEFAULT_THRESHOLD
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    cross_owner_exact: bool = False

    def __post_init__(self) -> None:
        band_widths(self.threshold)
        if self.ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")


class HashIndex(Protocol):
    """The pHash index port: bounded lookups and first-writer-wins puts."""

    @property
    def threshold(self) -> int:
        """The Hamming distance the band layout guarantees to find."""
        ...

    def lookup(
        self, scope: str, style_fp: str, phash: int, sha256: str | None = None, *, now: int | None = None
    ) -> Lookup:
        """Every unexpired same-scope entry within the threshold, and the unexpired exact-bytes entry."""
        ...

    def put(self, entry: Entry) -> bool:
        """Store ``entry`` unless its scope, style and hash are taken; True if this call wrote it."""
        ...

    def replace(self, entry: Entry, render_key: str, image_id: str | None = None) -> Entry:
        """Point a stale entry at a fresh render (the caller rendered again); returns the stored entry."""
        ...

    def delete(self, entry: Entry) -> None:
        """Remove an entry (its band items and, if it still points at the same render, its exact item)."""
        ...


def new_entry(
    scope: str,
    style_fp: str,
    phash: int,
    sha256: str,
    image_id: str,
    render_key: str,
    policy: CachePolicy,
    now: int | None = None,
) -> Entry:
    """An entry created now that expires after the policy's TTL."""
    created = int(time.time()) if now is None else now
    return Entry(
        scope, style_fp, phash, sha256.lower(), image_id, render_key, created, created + policy.ttl_seconds
    )


def select(
    band_entries: Iterable[Entry],
    exact_entry: Entry | None,
    phash: int,
    threshold: int,
    now: int,
) -> tuple[list[Candidate], Candidate | None]:
    """Filter what a lookup read: unexpired, within ``threshold``, one candidate per hash, nearest first."""
    seen: dict[int, Candidate] = {}
    for entry in band_entries:
        if entry.expires_at <= now or entry.phash in seen:
            continue
        distance = hamming(entry.phash, phash)
        if distance <= threshold:
            seen[entry.phash] = Candidate(entry, distance, "band")
    candidates = sorted(seen.values(), key=lambda c: (c.distance, c.entry.created_at, c.entry.phash))
    exact = None
    if exact_entry is not None and exact_entry.expires_at > now:
        exact = Candidate(exact_entry, hamming(exact_entry.phash, phash), "sha")
    return candidates, exact


@dataclass(frozen=True)
class Decision:
    """Reuse ``candidate``'s render, or render afresh (``candidate`` is None)."""

    candidate: Candidate | None
    reason: Literal["near_duplicate", "same_bytes_same_owner", "same_bytes_other_owner", "miss"]

    @property
    def hit(self) -> bool:
        """Whether an earlier render is to be reused."""
        return self.candidate is not None


def decide(lookup: Lookup, scope: str, sha256: str | None, policy: CachePolicy) -> Decision:
    """The render to reuse: the same owner's nearest entry, else (if allowed) another owner's same bytes."""
    exact = lookup.exact
    same_bytes = exact is not None and sha256 is not None and exact.entry.sha256 == sha256.lower()
    if exact is not None and same_bytes and exact.entry.scope == scope:
        return Decision(exact, "same_bytes_same_owner")
    for candidate in lookup.candidates:
        if candidate.entry.scope == scope and candidate.distance <= policy.threshold:
            return Decision(candidate, "near_duplicate")
    if exact is not None and same_bytes and policy.cross_owner_exact:
        return Decision(exact, "same_bytes_other_owner")
    return Decision(None, "miss")


def find_reusable(
    index: HashIndex,
    scope: str,
    style_fp: str,
    phash: int,
    sha256: str | None,
    policy: CachePolicy,
    now: int | None = None,
) -> Decision:
    """Look up and decide in one call."""
    if index.threshold < policy.threshold:
        raise ValueError("the index's band layout cannot guarantee the policy's threshold")
    return decide(index.lookup(scope, style_fp, phash, sha256, now=now), scope, sha256, policy)
