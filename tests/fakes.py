"""In-memory fakes of the ports, for tests without AWS; tests/unit/test_fakes.py types them against the ports.

- :class:`MemoryHashIndex`: atelier.cache.HashIndex, the DynamoDB pHash index's table layout in dicts.
- :class:`MemoryJobQueue`: atelier.worker.JobQueue, recording what the worker did with each message.
- :class:`FakeModels`: the GPU worker's models (atelier.entrypoints.gpu_worker.UpscaleModels, a class, not a
  Protocol) without a model file: a nearest-neighbour resize stands in for EDSR.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from atelier.adapters.aws.dynamo_index import (
    SHA_SORT_KEY,
    band_item,
    entry_from_band_item,
    entry_from_sha_item,
    item_size,
    sha_item,
)
from atelier.cache import (
    DEFAULT_THRESHOLD,
    Entry,
    Lookup,
    LookupStats,
    band_partition_keys,
    band_widths,
    hash_hex,
    select,
    sha_partition_key,
)
from atelier.worker import Message


class MemoryHashIndex:
    """The DynamoDB index's table layout held in dicts (atelier.cache.HashIndex)."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        band_widths(threshold)
        self._threshold = threshold
        self.items: dict[str, dict[str, dict[str, str | int]]] = {}

    @property
    def threshold(self) -> int:
        """The Hamming distance the band layout guarantees to find."""
        return self._threshold

    def lookup(
        self, scope: str, style_fp: str, phash: int, sha256: str | None = None, *, now: int | None = None
    ) -> Lookup:
        """One read per band bucket plus one for the exact item, as the DynamoDB adapter does."""
        now = int(time.time()) if now is None else now
        stats = LookupStats()
        read: list[Entry] = []
        for pk in band_partition_keys(scope, style_fp, phash, self._threshold):
            stats.requests += 1
            for item in self.items.get(pk, {}).values():
                stats.items += 1
                stats.bytes += item_size(item)
                read.append(entry_from_band_item(item, scope, style_fp))
        exact = None
        if sha256 is not None:
            stats.requests += 1
            exact_item = self.items.get(sha_partition_key(style_fp, sha256), {}).get(SHA_SORT_KEY)
            if exact_item is not None:
                stats.items += 1
                stats.bytes += item_size(exact_item)
                exact = entry_from_sha_item(exact_item, style_fp, sha256)
        candidates, nearest = select(read, exact, phash, self._threshold, now)
        return Lookup(candidates, nearest, stats)

    def put(self, entry: Entry) -> bool:
        """All band items or none; the exact item only if no other entry holds it."""
        keys = band_partition_keys(entry.scope, entry.style_fp, entry.phash, self._threshold)
        sk = hash_hex(entry.phash)
        if any(sk in self.items.get(pk, {}) for pk in keys):
            return False
        for pk in keys:
            self.items.setdefault(pk, {})[sk] = band_item(entry, pk)
        sha = sha_item(entry)
        self.items.setdefault(str(sha["pk"]), {}).setdefault(SHA_SORT_KEY, sha)
        return True

    def replace(self, entry: Entry, render_key: str, image_id: str | None = None) -> Entry:
        """Overwrite the band items and the exact item with the fresh render."""
        fresh = replace(entry, render_key=render_key, image_id=image_id or entry.image_id)
        for pk in band_partition_keys(entry.scope, entry.style_fp, entry.phash, self._threshold):
            self.items.setdefault(pk, {})[hash_hex(entry.phash)] = band_item(fresh, pk)
        sha = sha_item(fresh)
        self.items.setdefault(str(sha["pk"]), {})[SHA_SORT_KEY] = sha
        return fresh

    def delete(self, entry: Entry) -> None:
        """Drop the band items, and the exact item if it still names this entry's render."""
        for pk in band_partition_keys(entry.scope, entry.style_fp, entry.phash, self._threshold):
            self.items.get(pk, {}).pop(hash_hex(entry.phash), None)
        bucket = self.items.get(sha_partition_key(entry.style_fp, entry.sha256), {})
        if bucket.get(SHA_SORT_KEY, {}).get("render_key") == entry.render_key:
            bucket.pop(SHA_SORT_KEY)

    def count(self) -> int:
        """Number of stored items of every kind."""
        return sum(len(bucket) for bucket in self.items.values())


class MemoryJobQueue:
    """A JobQueue in a list that records what the worker did with each message."""

    def __init__(self, *messages: Message) -> None:
        self.waiting = list(messages)
        self.deleted: list[str] = []
        self.dead: list[str] = []
        self.released: list[str] = []

    def receive(self, visibility: int) -> list[Message]:
        return [self.waiting.pop(0)] if self.waiting else []

    def extend(self, message: Message, seconds: int) -> None:
        self.released.append(message.id)

    def delete(self, message: Message) -> None:
        self.deleted.append(message.id)

    def dead_letter(self, message: Message) -> None:
        self.dead.append(message.id)


class NearestUpscaler:
    """Stands in for the EDSR graph: a nearest-neighbour resize by the scale."""

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def upscale(self, bgr: np.ndarray, tile: int | None = None) -> np.ndarray:
        return cv2.resize(bgr, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_NEAREST)


class FakeModels:
    """The worker's UpscaleModels without a model file."""

    def model_path(self, scale: int) -> Path:
        return Path(f"nearest_x{scale}.onnx")

    def get(self, scale: int) -> NearestUpscaler:
        return NearestUpscaler(scale)
