"""The pHash cache core: bands, the distance guarantee, key layout, scope rules, TTL and conditional puts."""

from __future__ import annotations

import random

import pytest

from atelier.adapters.aws.dynamo_index import TTL_ATTRIBUTE
from atelier.cache import (
    DEFAULT_THRESHOLD,
    HASH_BITS,
    CachePolicy,
    Entry,
    HashIndex,
    band_partition_keys,
    band_widths,
    bands,
    decide,
    find_reusable,
    hamming,
    new_entry,
    sha_partition_key,
)
from tests.fakes import MemoryHashIndex

NOW = 1_700_000_000
SHA_A = "a" * 64
SHA_B = "b" * 64
STYLE = "sketch:v1:ksize=21"


def _typed(index: MemoryHashIndex) -> HashIndex:
    """The in-memory index is checked by mypy against the same Protocol as the DynamoDB adapter."""
    return index


def flip(value: int, bits: list[int]) -> int:
    """``value`` with the given bit positions inverted."""
    for bit in bits:
        value ^= 1 << bit
    return value


def spread_flips(rng: random.Random, threshold: int, distance: int) -> list[int]:
    """Bit positions that touch as many bands as possible (the hardest case for banding)."""
    starts, pos = [], 0
    for width in band_widths(threshold):
        starts.append((pos, width))
        pos += width
    chosen: list[int] = []
    for i in range(distance):
        start, width = starts[i % len(starts)]
        candidates = [HASH_BITS - 1 - (start + k) for k in range(width)]
        chosen.append(rng.choice([c for c in candidates if c not in chosen]))
    return chosen


def entry(phash: int, scope: str = "alice", sha: str = SHA_A, image_id: str = "img-1", **kw: int) -> Entry:
    """An entry made with the default policy at NOW."""
    policy = CachePolicy(ttl_seconds=kw.get("ttl", 3600))
    return new_entry(scope, STYLE, phash, sha, image_id, f"renders/{image_id}/sketch.jpg", policy, now=NOW)


@pytest.mark.parametrize("threshold", [0, 1, 3, 5, 6, 8, 10, 15])
def test_bands_partition_the_64_bits(threshold: int) -> None:
    """t + 1 bands, widths summing to 64 and differing by at most one, values recombining to the hash."""
    widths = band_widths(threshold)
    assert len(widths) == threshold + 1
    assert sum(widths) == HASH_BITS
    assert max(widths) - min(widths) <= 1
    value = 0x9F3A_0C55_E1D2_7B48
    recombined = 0
    for width, band in zip(widths, bands(value, threshold), strict=True):
        recombined = (recombined << width) | band
    assert recombined == value


@pytest.mark.parametrize("threshold", [1, 4, 5, 6, 8])
def test_every_hash_within_t_is_found_and_t_plus_one_may_not_be(threshold: int) -> None:
    """Distances 0..t spread over all bands are found; t + 1 can evade every band and is not returned."""
    rng = random.Random(threshold)
    index = MemoryHashIndex(threshold)
    for trial in range(40):
        stored = rng.getrandbits(64)
        scope = f"owner-{trial}"
        index.put(entry(stored, scope=scope, image_id=f"img-{trial}"))
        for distance in range(threshold + 1):
            query = flip(stored, spread_flips(rng, threshold, distance))
            assert hamming(query, stored) == distance
            found = index.lookup(scope, STYLE, query, now=NOW).candidates
            assert [c.entry.phash for c in found] == [stored]
            assert found[0].distance == distance
        evasive = flip(stored, spread_flips(rng, threshold, threshold + 1))
        assert hamming(evasive, stored) == threshold + 1
        assert all(
            b1 != b2 for b1, b2 in zip(bands(evasive, threshold), bands(stored, threshold), strict=True)
        )
        assert index.lookup(scope, STYLE, evasive, now=NOW).candidates == []


def test_a_t_plus_one_neighbour_sharing_a_band_is_read_but_not_returned() -> None:
    """Within the bucket read, entries beyond t are filtered out by their exact distance."""
    index = MemoryHashIndex(5)
    stored = 0
    index.put(entry(stored))
    query = (1 << 6) - 1  # six low bits set: distance 6, all inside the last band
    lookup = index.lookup("alice", STYLE, query, now=NOW)
    assert lookup.stats.items >= 1
    assert lookup.candidates == []


@pytest.mark.slow
def test_lookup_cost_is_t_plus_one_queries_and_one_get_whatever_the_index_size() -> None:
    """Requests per lookup do not grow with the number of stored hashes."""
    rng = random.Random(3)
    index = MemoryHashIndex(DEFAULT_THRESHOLD)
    costs = []
    for size in (10, 1000, 5000):
        while index.count() < size * (DEFAULT_THRESHOLD + 2):
            index.put(
                entry(rng.getrandbits(64), image_id=f"i{index.count()}", sha=f"{rng.getrandbits(256):064x}")
            )
        costs.append(index.lookup("alice", STYLE, rng.getrandbits(64), SHA_B, now=NOW).stats.requests)
    assert costs == [DEFAULT_THRESHOLD + 2] * 3


def test_keys_separate_scope_style_and_band_count() -> None:
    """Owners, styles and band layouts never share a bucket; '#' in a name cannot forge one."""
    h = 0x0123_4567_89AB_CDEF
    alice = set(band_partition_keys("alice", STYLE, h, 5))
    assert alice.isdisjoint(band_partition_keys("bob", STYLE, h, 5))
    assert alice.isdisjoint(band_partition_keys("alice", "sketch:v2:ksize=21", h, 5))
    assert alice.isdisjoint(band_partition_keys("alice", STYLE, h, 6))
    assert set(band_partition_keys("a#b", "c", h, 5)).isdisjoint(band_partition_keys("a", "b#c", h, 5))
    assert sha_partition_key(STYLE, SHA_A.upper()) == sha_partition_key(STYLE, SHA_A)
    with pytest.raises(ValueError):
        sha_partition_key(STYLE, "not-a-digest")
    with pytest.raises(ValueError):
        band_partition_keys("", STYLE, h, 5)


def test_near_duplicates_are_reused_only_within_the_same_owner() -> None:
    """Bob's near-identical photo does not get Alice's render."""
    index = MemoryHashIndex()
    stored = 0xF0F0_F0F0_0F0F_0F0F
    index.put(entry(stored, scope="alice"))
    near = flip(stored, [0, 17])
    policy = CachePolicy(cross_owner_exact=True)
    mine = find_reusable(index, "alice", STYLE, near, SHA_B, policy, now=NOW)
    assert mine.hit and mine.reason == "near_duplicate" and mine.candidate is not None
    assert mine.candidate.entry.render_key == "renders/img-1/sketch.jpg"
    assert mine.candidate.distance == 2
    theirs = find_reusable(index, "bob", STYLE, near, SHA_B, policy, now=NOW)
    assert not theirs.hit and theirs.reason == "miss"


def test_other_owners_share_only_byte_identical_sources_and_only_when_configured() -> None:
    """Same SHA-256: a hit for Bob only with cross_owner_exact; a different SHA never crosses owners."""
    index = MemoryHashIndex()
    stored = 0x1234_5678_9ABC_DEF0
    index.put(entry(stored, scope="alice", sha=SHA_A))
    off = find_reusable(index, "bob", STYLE, stored, SHA_A, CachePolicy(), now=NOW)
    assert not off.hit
    on = find_reusable(index, "bob", STYLE, stored, SHA_A, CachePolicy(cross_owner_exact=True), now=NOW)
    assert on.hit and on.reason == "same_bytes_other_owner"
    assert on.candidate is not None and on.candidate.entry.scope == "alice"
    other_bytes = find_reusable(
        index, "bob", STYLE, stored, SHA_B, CachePolicy(cross_owner_exact=True), now=NOW
    )
    assert not other_bytes.hit


def test_same_owner_same_bytes_is_reported_as_such() -> None:
    """The exact item answers first for the owner who wrote it."""
    index = MemoryHashIndex()
    index.put(entry(42, scope="alice", sha=SHA_A))
    decision = find_reusable(index, "alice", STYLE, 42, SHA_A, CachePolicy(), now=NOW)
    assert decision.reason == "same_bytes_same_owner"


def test_nearest_candidate_wins() -> None:
    """With several stored neighbours, the decision takes the smallest distance."""
    index = MemoryHashIndex()
    base = 0xAAAA_AAAA_AAAA_AAAA
    index.put(entry(flip(base, [1, 2, 3]), image_id="far"))
    index.put(entry(flip(base, [40]), image_id="near", sha=SHA_B))
    decision = find_reusable(index, "alice", STYLE, base, None, CachePolicy(), now=NOW)
    assert decision.candidate is not None and decision.candidate.entry.image_id == "near"
    assert [c.distance for c in index.lookup("alice", STYLE, base, now=NOW).candidates] == [1, 3]


def test_ttl_attribute_is_written_and_expired_entries_are_ignored() -> None:
    """Items carry expires_at = created + TTL; a lookup after that time does not return them."""
    index = MemoryHashIndex()
    e = entry(7, ttl=600)
    assert e.expires_at == NOW + 600
    index.put(e)
    stored_items = [item for bucket in index.items.values() for item in bucket.values()]
    assert stored_items and all(item[TTL_ATTRIBUTE] == NOW + 600 for item in stored_items)
    assert index.lookup("alice", STYLE, 7, SHA_A, now=NOW + 599).candidates
    late = index.lookup("alice", STYLE, 7, SHA_A, now=NOW + 600)
    assert late.candidates == [] and late.exact is None
    with pytest.raises(ValueError):
        CachePolicy(ttl_seconds=0)


def test_put_is_first_writer_wins() -> None:
    """A second put of the same scope, style and hash changes nothing and reports False."""
    index = MemoryHashIndex()
    first = entry(99, image_id="first")
    second = entry(99, image_id="second", sha=SHA_B)
    assert index.put(first) is True
    count = index.count()
    assert index.put(second) is False
    assert index.count() == count
    found = index.lookup("alice", STYLE, 99, now=NOW).candidates
    assert [c.entry.image_id for c in found] == ["first"]


def test_replace_and_delete_repair_a_stale_entry() -> None:
    """A stale render is re-pointed by replace; delete removes the entry and its exact item."""
    index = MemoryHashIndex()
    e = entry(1234)
    index.put(e)
    fresh = index.replace(e, "renders/img-9/sketch.jpg", image_id="img-9")
    lookup = index.lookup("alice", STYLE, 1234, SHA_A, now=NOW)
    assert [c.entry.render_key for c in lookup.candidates] == ["renders/img-9/sketch.jpg"]
    assert lookup.exact is not None and lookup.exact.entry.image_id == "img-9"
    index.delete(fresh)
    after = index.lookup("alice", STYLE, 1234, SHA_A, now=NOW)
    assert after.candidates == [] and after.exact is None
    assert index.count() == 0


def test_policy_threshold_beyond_the_layout_is_refused() -> None:
    """An index banded for t cannot promise recall at a larger policy threshold."""
    with pytest.raises(ValueError):
        find_reusable(MemoryHashIndex(3), "alice", STYLE, 0, None, CachePolicy(threshold=5))
    with pytest.raises(ValueError):
        band_widths(64)


def test_decide_without_candidates_is_a_miss() -> None:
    """An empty lookup decides to render."""
    index = _typed(MemoryHashIndex())
    decision = decide(index.lookup("alice", STYLE, 5, None, now=NOW), "alice", None, CachePolicy())
    assert decision.candidate is None and not decision.hit
