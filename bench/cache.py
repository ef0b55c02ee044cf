"""Near-duplicate cache benchmarks: pHash speed, robustness on real photos, and lookup cost vs a linear scan.

Run: ``.venv/bin/python bench/cache.py`` (add ``--quick`` for a shorter run). Prints Markdown tables.
``--workload`` runs only the workload on the local stack (``--style``, ``--photos``; ``--quick``: 8 photos);
it is not part of the default run: with the anime style it takes about 15 minutes on 2 shared cores.

What is measured how:
- pHash at 6 MP: a 3072x2048 JPEG (skimage's astronaut, upscaled, with mild noise) decoded once; medians of
  repeated runs of atelier.imaging.phash on the decoded array, imagehash.phash(Image.open(path)) (the
  reference's way, decode included) and imagehash.phash on the same decoded array.
- Robustness: pHash distances between each bundled skimage photo and benign variants of it (JPEG
  re-encode, resizes, an EXIF-rotated copy decoded by atelier.imaging.decode, metadata stripped,
  brightness, 2 % crop), and between every pair of different photos.
- Lookup cost: requests, items and bytes per lookup are counted on the in-memory model of the table
  (tests.fakes.MemoryHashIndex's layout; bucket occupancy computed with numpy for 10^5 and 10^6 uniform
  random hashes); the time of a real lookup over HTTP is measured on moto's server with 200 entries loaded
  into its in-process backend (moto's Query cost grows with the table, DynamoDB's does not);
  the reference's linear scan over a list of imagehash values is timed in the same run.
- Workload (the reference's test, 20 % repeats): N distinct photos (the bundled skimage photos, then
  mirrored, flipped and cropped copies, each kept only if its pHash is more than 2t from every other) at
  2/4/6 MP (JPEG q90, mild noise), and N/4 repeats: earlier uploads of the workload renamed and re-encoded
  at another JPEG quality, shuffled in. On one LocalStack (SeaweedFS + moto) the same workload is dropped
  one photo at a time under incoming/<style>/ (owner: the bucket), each upload after the previous one is
  done, with the cache off (the function's own handler built with ATELIER_PHASH_TABLE empty, installed
  as a dispatcher override) and on (the template's handler), the two passes interleaved upload by upload
  (under cache-off/ and cache-on/) so that other work on the machine weighs on both alike; a warm-up photo
  precedes them. Per upload: end-to-end (PutObject sent -> the dispatcher's invoke returned, status
  ``done``, the render checked with HeadObject), the invoke's own time, and the status item's pipeline
  timings and ``cache`` info (hit, distance, source image).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

# isort: off
import atelier  # noqa: F401  (first: sets OpenCV's decode limits before cv2 loads)

# isort: on
import cv2
import imagehash
import numpy as np
from PIL import Image
from skimage import data

from atelier.adapters.aws.dynamo_index import band_item, item_size, sha_item
from atelier.cache import (
    DEFAULT_THRESHOLD,
    CachePolicy,
    band_partition_keys,
    band_widths,
    new_entry,
)
from atelier.config import read_limits
from atelier.imaging import phash as phash_module
from atelier.imaging.decode import decode
from atelier.imaging.phash import hamming, phash
from atelier.imaging.styles import CPU_STYLES

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
MOTO_ENTRIES = 200  # moto answers a Query by walking the whole table, so its time grows with the table
GRAYS = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock", "cell")


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def sample(name: str) -> np.ndarray:
    """A bundled skimage image as 8-bit BGR."""
    img = getattr(data, name)()
    if img.dtype != np.uint8:
        img = (img * 255).astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2BGR)


def jpeg_bytes(bgr: np.ndarray, quality: int = 95) -> bytes:
    """JPEG encoding of a BGR image."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def with_exif(jpeg: bytes, orientation: int, junk: bytes = b"") -> bytes:
    """The JPEG with an APP1 Exif segment (orientation tag, plus optional junk metadata) after SOI."""
    entries = [(0x0112, 3, 1, orientation)]
    if junk:
        entries.append((0x010E, 2, len(junk), 0))  # ImageDescription, stored after the IFD
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    tiff = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if kind == 3:
            tiff += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            tiff += struct.pack("<HHII", tag, kind, count, data_offset)
    tiff += b"\x00\x00\x00\x00" + junk
    payload = b"Exif\x00\x00" + bytes(tiff)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def decoded(blob: bytes) -> np.ndarray:
    """What a handler hashes: atelier.imaging.decode's BGR (EXIF orientation applied)."""
    return decode(blob, read_limits()).bgr


def bench_phash(repeat: int) -> None:
    """pHash at 6 MP: atelier (kernel, and the Pillow fallback) vs the reference's way and imagehash."""
    base = cv2.resize(sample("astronaut"), (3072, 2048), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(-6, 7, base.shape)
    bgr6 = np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo-6mp.jpg"
        path.write_bytes(jpeg_bytes(bgr6, 92))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        assert f"{phash(bgr):016x}" == str(imagehash.phash(Image.fromarray(rgb)))
        assert phash_module.backend() == "native", "build the kernel first: make native"
        phash(bgr)  # coefficient tables for this size, built once per container
        luma = phash_module.resize_luma(bgr)
        runs: list[tuple[str, Callable[[], object]]] = [
            ("atelier.imaging.phash(decoded BGR), native kernel", lambda: phash(bgr)),
            (
                "atelier, Pillow fallback (no kernel built)",
                lambda: phash_module.hash_of_luma(phash_module.resize_luma_pillow(bgr)),
            ),
            ("imagehash.phash(Image.open(path)) (reference)", lambda: imagehash.phash(Image.open(path))),
            ("imagehash.phash(Image.fromarray(decoded))", lambda: imagehash.phash(Image.fromarray(rgb))),
            ("  of which atelier's luma + resize (kernel)", lambda: phash_module.resize_luma_native(bgr)),
            ("  of which atelier's DCT + median", lambda: phash_module.hash_of_luma(luma)),
        ]
        # interleaved rounds, so that the load of other work weighs on every method alike
        times: dict[str, list[float]] = {name: [] for name, _ in runs}
        for _ in range(repeat):
            for name, fn in runs:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    rows = [(name, statistics.median(t) * 1e3) for name, t in times.items()]
    ours = rows[0][1]
    print(
        f"\n### pHash of a {bgr.shape[1]}x{bgr.shape[0]} JPEG "
        f"({bgr.shape[0] * bgr.shape[1] / 1e6:.1f} MP), median of {repeat} interleaved rounds, "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| method | median ms | vs atelier |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms / ours:.2f}x |")


def variants(bgr: np.ndarray) -> dict[str, np.ndarray]:
    """Benign variants of a photo, each as a handler would decode it."""
    h, w = bgr.shape[:2]
    original = jpeg_bytes(bgr, 95)
    out: dict[str, np.ndarray] = {}
    for q in (60, 75, 85, 95):
        out[f"jpeg q{q}"] = decoded(jpeg_bytes(decoded(original), q))
    for pct in (50, 75, 150, 200):
        interp = cv2.INTER_AREA if pct < 100 else cv2.INTER_CUBIC
        out[f"resize {pct}%"] = decoded(
            jpeg_bytes(cv2.resize(bgr, (w * pct // 100, h * pct // 100), interpolation=interp))
        )
    rotated = jpeg_bytes(cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE), 95)
    out["EXIF rotation (6)"] = decoded(with_exif(rotated, 6))
    out["metadata stripped"] = decoded(
        jpeg_bytes(decoded(with_exif(original, 1, b"camera model, GPS, notes" * 8)))
    )
    for sign in (+1, -1):
        out[f"brightness {sign * 10:+d}%"] = decoded(
            jpeg_bytes(cv2.convertScaleAbs(bgr, alpha=1 + sign * 0.1))
        )
    dy, dx = max(1, h // 100), max(1, w // 100)
    out["crop 2% (1% each side)"] = decoded(jpeg_bytes(bgr[dy : h - dy, dx : w - dx]))
    out["crop 2% (one corner)"] = decoded(jpeg_bytes(bgr[2 * dy :, 2 * dx :]))
    return out


def bench_robustness() -> int:
    """Distance distributions for benign variants and for different photos; returns the chosen threshold."""
    photos = {name: sample(name) for name in PHOTOS + GRAYS}
    hashes = {name: phash(decoded(jpeg_bytes(img, 95))) for name, img in photos.items()}
    per_kind: dict[str, list[int]] = {}
    for name, img in photos.items():
        for kind, variant in variants(img).items():
            per_kind.setdefault(kind, []).append(hamming(hashes[name], phash(variant)))
    benign = [d for ds in per_kind.values() for d in ds]
    pairs = [hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(photos, 2)]
    print(
        f"\n### Distances on {len(photos)} bundled skimage photos ({len(PHOTOS)} colour, {len(GRAYS)} grey)\n"
    )
    print("| variant | n | max | distances |")
    print("|---|---:|---:|---|")
    for kind, ds in per_kind.items():
        print(f"| {kind} | {len(ds)} | {max(ds)} | {' '.join(map(str, sorted(ds)))} |")
    hist_b = np.bincount(benign, minlength=65)
    hist_p = np.bincount(pairs, minlength=65)
    print("\n| distance | benign variants | pairs of different photos |")
    print("|---:|---:|---:|")
    for d in range(0, 65):
        if hist_b[d] or hist_p[d]:
            print(f"| {d} | {hist_b[d]} | {hist_p[d]} |")
    print("\n| t | benign hits | false hits (pairs) | bands of bits |")
    print("|---:|---:|---:|---|")
    chosen = None
    for t in range(0, 17):
        hits = sum(1 for d in benign if d <= t) / len(benign)
        false = sum(1 for d in pairs if d <= t)
        print(f"| {t} | {hits:.1%} | {false} of {len(pairs)} | {'/'.join(map(str, band_widths(t)))} |")
        if chosen is None and hits >= 0.95 and false == 0:
            chosen = t
    closest = min(pairs)
    print(
        f"\nclosest pair of different photos: {closest}; "
        f"smallest t with >= 95 % benign hits and no false hit: {chosen}; default t: {DEFAULT_THRESHOLD}"
    )
    return chosen if chosen is not None else 5


def bucket_cost(
    hashes: np.ndarray, threshold: int, queries: np.ndarray, band_item_bytes: int
) -> tuple[float, float, float]:
    """Requests, items and bytes per lookup on the table model, from band-bucket occupancy."""
    widths = band_widths(threshold)
    shifts = np.cumsum([0, *widths])[:-1]
    items = np.zeros(len(queries))
    for width, start in zip(widths, shifts, strict=True):
        shift = np.uint64(64 - start - width)
        mask = np.uint64((1 << width) - 1)
        stored = (hashes >> shift) & mask
        counts = np.bincount(stored.astype(np.int64), minlength=1 << width)
        items += counts[((queries >> shift) & mask).astype(np.int64)]
    return float(threshold + 2), float(items.mean() + 1), float((items.mean() + 1) * band_item_bytes)


def load_moto(count: int, threshold: int, rng: np.random.Generator) -> tuple[Any, str, Any, list[int]]:
    """moto's server with ``count`` entries put straight into its in-process backend."""
    import logging
    import socket

    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.server import ThreadedMotoServer

    from atelier_dev.local import strict_moto

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    strict_moto.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    table = "phash-bench"
    client.create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    policy = CachePolicy(threshold=threshold)
    now = int(time.time())
    stored = [int(h) for h in _random_hashes(rng, count)]
    for i, h in enumerate(stored):
        e = new_entry(
            "owner-1", "sketch:v1", h, f"{i:064x}", f"img-{i}", f"renders/img-{i}/sketch.jpg", policy, now
        )
        for pk in band_partition_keys(e.scope, e.style_fp, e.phash, threshold):
            backend.put_item(table, _typed(band_item(e, pk)))
        backend.put_item(table, _typed(sha_item(e)))
    return client, table, server, stored


def _random_hashes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Uniform random unsigned 64-bit hashes."""
    return rng.integers(0, 2**64 - 1, count, dtype=np.uint64, endpoint=True)


def _typed(item: dict[str, str | int]) -> dict[str, dict[str, str]]:
    """Plain attributes in DynamoDB's typed form."""
    return {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in item.items()}


def bench_lookup(threshold: int, quick: bool) -> None:
    """Lookup cost at 10^4, 10^5, 10^6 stored hashes beside the reference's linear scan."""
    from atelier.adapters.aws.dynamo_index import DynamoHashIndex

    rng = np.random.default_rng(1)
    policy = CachePolicy(threshold=threshold)
    sample_entry = new_entry(
        "owner-1", "sketch:v1", 2**63 + 12345, "f" * 64, "img-123456", "renders/img-123456/sketch.jpg", policy
    )
    band_bytes = item_size(
        band_item(sample_entry, band_partition_keys("owner-1", "sketch:v1", sample_entry.phash, threshold)[0])
    )
    sizes = [10**4, 10**5] if quick else [10**4, 10**5, 10**6]
    queries = _random_hashes(rng, 200)
    print(
        f"\n### Lookup cost per query, t = {threshold} ({threshold + 1} bands of "
        f"{'/'.join(map(str, band_widths(threshold)))} bits), uniform random 64-bit hashes\n"
    )
    print(
        "| stored hashes | requests (ours) | items read (ours) | bytes read (ours) "
        "| reference linear scan (ms) | reference: hashes compared |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        hashes = _random_hashes(rng, size)
        requests, items, nbytes = bucket_cost(hashes, threshold, queries, band_bytes)
        ref_store = [
            imagehash.ImageHash(
                np.unpackbits(np.frombuffer(int(h).to_bytes(8, "big"), np.uint8)).astype(bool).reshape(8, 8)
            )
            for h in hashes[: min(size, 10**5)]
        ]
        q_hash = ref_store[0]

        def scan(store: list[imagehash.ImageHash] = ref_store, q: imagehash.ImageHash = q_hash) -> list[Any]:
            """The reference's lookup: every stored hash compared with the query."""
            return [h for h in store if h - q <= 5]

        scan_ms = median_ms(scan, 1 if len(ref_store) > 10**4 else 3)
        scan_ms *= size / len(ref_store)
        note = "" if len(ref_store) == size else " (scaled from 10^5)"
        print(
            f"| {size:,} | {requests:.0f} | {items:.1f} | {nbytes:,.0f} | {scan_ms:,.1f}{note} | {size:,} |"
        )
    print(f"\nband item size: {band_bytes} bytes; the exact-bytes GetItem adds one item")
    client, table, server, stored = load_moto(MOTO_ENTRIES, threshold, rng)
    try:
        index = DynamoHashIndex(client, table, threshold)
        probe = [int(q) for q in queries[:10]]
        near = [h ^ 0b101 for h in stored[:10]]
        index.lookup("owner-1", "sketch:v1", probe[0], "e" * 64)
        timings = []
        for q in probe:
            start = time.perf_counter()
            result = index.lookup("owner-1", "sketch:v1", q, "e" * 64)
            timings.append(time.perf_counter() - start)
        found = sum(1 for q in near if index.lookup("owner-1", "sketch:v1", q).candidates)
    finally:
        server.stop()
    print(
        f"\nover HTTP on moto's server ({MOTO_ENTRIES:,} entries, "
        f"{result.stats.requests} requests per lookup): "
        f"median {statistics.median(timings) * 1e3:.1f} ms per lookup; "
        f"near-duplicates (distance 2) found: {found} of {len(near)}"
    )


# --- workload with repeats on the local stack ------------------------------------------------------------

REPEAT_SHARE = 0.2  # the reference's test: one upload in five is a photo seen before
WORKLOAD_STYLE = "anime"  # the reference's cache sat in front of AnimeGANv2
MEGAPIXELS = (2.0, 4.0, 6.0)  # distinct photos cycle through these sizes
ORIGINAL_QUALITY = 90
REPEAT_QUALITIES = (75, 80, 85, 95)  # a repeat is the earlier upload decoded and re-encoded at one of these
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "": lambda img: img,
    "mirror": lambda img: img[:, ::-1],
    "flip": lambda img: img[::-1],
    "rot180": lambda img: img[::-1, ::-1],
    "left": lambda img: img[:, : img.shape[1] * 2 // 3],
    "right": lambda img: img[:, img.shape[1] // 3 :],
    "top": lambda img: img[: img.shape[0] * 2 // 3],
    "bottom": lambda img: img[img.shape[0] // 3 :],
}


@dataclass(frozen=True)
class WorkItem:
    """One upload of the workload: its file name and bytes, and which earlier upload it repeats."""

    name: str
    body: bytes
    photo: str
    megapixels: float
    quality: int
    repeat_of: int | None = None  # position in the workload of the upload this one repeats


@dataclass
class Timed:
    """What one upload cost on the stack, and what its status item says."""

    item: WorkItem
    image_id: str
    e2e_s: float  # PutObject sent -> handler returned with the status item `done`
    handler_s: float  # the asynchronous invoke, Powertools and idempotency included
    delay_s: float  # PutObject answered -> event delivered (the dispatcher's polling)
    cache: dict[str, Any]
    timings_ms: dict[str, float]


def distinct_photos(count: int, threshold: int) -> list[tuple[str, np.ndarray]]:
    """``count`` different photos: the bundled ones, then mirrored, flipped and cropped copies of them.

    A candidate is kept only if its pHash is more than ``2 * threshold`` away from every photo kept
    before it, so that no re-encoded repeat can land within ``threshold`` of the wrong photo.
    """
    sources = {name: sample(name) for name in PHOTOS + GRAYS}
    chosen: list[tuple[str, np.ndarray, int]] = []
    for transform, fn in TRANSFORMS.items():
        for name, img in sources.items():
            candidate = np.ascontiguousarray(fn(img))
            h = phash(candidate)
            if all(hamming(h, other) > 2 * threshold for _, _, other in chosen):
                chosen.append((f"{name}-{transform}" if transform else name, candidate, h))
            if len(chosen) == count:
                return [(name, img) for name, img, _ in chosen]
    raise ValueError(f"only {len(chosen)} distinct photos can be made, {count} were asked for")


def at_megapixels(bgr: np.ndarray, megapixels: float, rng: np.random.Generator) -> np.ndarray:
    """The photo resized (aspect kept) to about ``megapixels``, with mild sensor-like noise."""
    h, w = bgr.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    big = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-6, 7, big.shape)
    return np.clip(big.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def build_workload(
    count: int, threshold: int, rng: np.random.Generator
) -> tuple[list[WorkItem], WorkItem, int]:
    """``count`` distinct photos plus 20 % repeats in a shuffled order, a warm-up photo, and the
    smallest pHash distance between two different photos of the workload (as the handler decodes them).
    """
    photos = distinct_photos(count + 1, threshold)
    originals = []
    for i, (name, img) in enumerate(photos):
        mp = MEGAPIXELS[i % len(MEGAPIXELS)]
        originals.append((name, mp, jpeg_bytes(at_megapixels(img, mp, rng), ORIGINAL_QUALITY)))
    warm_name, warm_mp, warm_body = originals.pop()
    warmup = WorkItem("WARMUP.jpg", warm_body, warm_name, warm_mp, ORIGINAL_QUALITY)
    repeats = round(count * REPEAT_SHARE / (1 - REPEAT_SHARE))
    total = count + repeats
    repeat_slots = {int(p) for p in rng.choice(np.arange(2, total), repeats, replace=False)}
    items: list[WorkItem] = []
    firsts: list[int] = []  # positions of first uploads, in order
    repeated: set[int] = set()
    for pos in range(total):
        name = f"IMG_{pos + 1:04d}.jpg"
        if pos in repeat_slots:
            fresh = [p for p in firsts if p not in repeated] or firsts
            src = int(rng.choice(fresh))
            repeated.add(src)
            quality = REPEAT_QUALITIES[len(items) % len(REPEAT_QUALITIES)]
            body = jpeg_bytes(decoded(items[src].body), quality)
            items.append(WorkItem(name, body, items[src].photo, items[src].megapixels, quality, src))
        else:
            photo, mp, body = originals[len(firsts)]
            firsts.append(pos)
            items.append(WorkItem(name, body, photo, mp, ORIGINAL_QUALITY))
    hashes = [phash(decoded(items[p].body)) for p in firsts]
    closest = min(hamming(a, b) for a, b in itertools.combinations(hashes, 2))
    return items, warmup, closest


def ensure_dev_model() -> Path:
    """The model cache with the untrained AnimeGANv2 dev model in it (built once, in seconds)."""
    from atelier.inference import models
    from atelier_dev.demo import DEV_MODELS
    from atelier_dev.models.cli import main as models_main

    root = models.cache_dir()
    if not models.installed_path(DEV_MODELS[0], root=root).exists():
        models_main(["--cache", str(root), "build-dev", "--only", DEV_MODELS[0]])
    return root


def uncached_handler(stack: Any, logical_id: str, style: str) -> Any:
    """The style's handler as its function builds it, with ``ATELIER_PHASH_TABLE`` empty: no cache."""
    from atelier.entrypoints.lambda_anime import anime_handler
    from atelier.entrypoints.lambda_style import style_handler

    with mock.patch.dict(os.environ, {**stack.function_env(logical_id), "ATELIER_PHASH_TABLE": ""}):
        return anime_handler() if style == "anime" else style_handler(style)


def run_workload(
    stack: Any, style: str, items: list[WorkItem], warmup: WorkItem, timeout: float = 180.0
) -> tuple[list[Timed], list[Timed]]:
    """Upload the workload twice, cache off and on, one photo at a time; the times (off, on) of each.

    The two passes are interleaved upload by upload (which goes first alternates), so that the load of
    other work on a shared machine weighs on both alike; each upload waits for the previous one.
    """
    from atelier.adapters.aws.status import DynamoStatusStore
    from atelier.domain import keys
    from atelier_dev.local.dispatcher import encode_key

    dispatcher = stack.dispatcher
    function = dispatcher.resolve_function(style)
    status = DynamoStatusStore(stack.dynamodb, stack.env["ATELIER_STATUS_TABLE"])
    uncached = uncached_handler(stack, function, style)

    def upload(item: WorkItem, cached: bool) -> Timed:
        if not cached:
            with dispatcher.overriding({function: uncached}):
                return upload_to(f"{keys.INCOMING}{style}/cache-off/{item.name}", item)
        return upload_to(f"{keys.INCOMING}{style}/cache-on/{item.name}", item)

    def upload_to(key: str, item: WorkItem) -> Timed:
        start = time.time()
        put = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=item.body, ContentType="image/jpeg")
        put_at = time.time()
        deadline = time.monotonic() + timeout
        invocation = None
        while invocation is None:
            invocation = next((i for i in dispatcher.invocations(function) if i.key == encode_key(key)), None)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no event for {key} within {timeout:.0f} s")
            time.sleep(0.005)
        if not invocation.done.wait(timeout) or invocation.finished_at is None:
            raise TimeoutError(f"{key} did not finish within {timeout:.0f} s")
        image_id = keys.drop_in_image_id(key, put["ETag"].strip('"'))
        found = [i for i in status.get_status(image_id) if i["style"] == style]
        if invocation.outcome != "success" or not found or found[0]["state"] != "done":
            raise RuntimeError(f"{key}: {invocation.outcome} {invocation.errors} {found}")
        stack.s3.head_object(Bucket=stack.bucket, Key=found[0]["output_key"])  # the render is there
        return Timed(
            item,
            image_id,
            invocation.finished_at - start,
            invocation.finished_at - invocation.started_at,
            invocation.started_at - put_at,
            dict(found[0].get("cache") or {}),
            {k: float(v) for k, v in found[0]["timings_ms"].items()},
        )

    for cached in (False, True):
        upload(warmup, cached)  # imports, model session, coefficient tables: once per container
    off: list[Timed] = []
    on: list[Timed] = []
    for pos, item in enumerate(items):
        for cached in (pos % 2 == 1, pos % 2 == 0):
            (on if cached else off).append(upload(item, cached))
    return off, on


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.median(values)


def bench_workload(photos: int, style: str, threshold: int) -> None:
    """Time per image over a workload with 20 % repeats on the local stack, with and without the cache."""
    from atelier_dev.demo import DEV_MODELS
    from atelier_dev.local.stack import start_stack

    rng = np.random.default_rng(2)
    started = time.perf_counter()
    items, warmup, closest = build_workload(photos, threshold, rng)
    repeats = sum(1 for i in items if i.repeat_of is not None)
    model_dir = ensure_dev_model()
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp,
        start_stack(Path(tmp), parameters={"AnimeModel": DEV_MODELS[0]}) as stack,
    ):
        stack.env.update(
            ATELIER_MODEL_DIR=str(model_dir),
            POWERTOOLS_LOG_LEVEL="WARNING",
            POWERTOOLS_METRICS_DISABLED="true",
        )
        stack.start_dispatcher()
        if int(stack.env.get("ATELIER_CACHE_THRESHOLD", threshold)) != threshold:
            raise ValueError("the template's CacheThreshold differs from the threshold asked for")
        with contextlib.redirect_stdout(sys.stderr):  # the handlers' logs; stdout keeps the tables
            off, on = run_workload(stack, style, items, warmup)
    load_after = os.getloadavg()
    sizes = sorted({f"{i.megapixels:g}" for i in items})
    print(
        f"\n### Workload with {REPEAT_SHARE:.0%} repeats on the local stack: `{style}`, "
        f"{len(items)} uploads ({photos} distinct photos + {repeats} repeats), one at a time\n"
    )
    print(
        f"photos of {'/'.join(sizes)} MP (JPEG q{ORIGINAL_QUALITY}); a repeat is an earlier upload renamed "
        f"and "
        f"re-encoded at q{'/'.join(map(str, REPEAT_QUALITIES))}; closest pair of different photos: "
        f"{closest} (t = {threshold}); the same workload with the cache off (ATELIER_PHASH_TABLE empty) "
        f"and on, interleaved; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
        f"{time.perf_counter() - started:.0f} s in all\n"
    )
    print("| cache | uploads | mean s/image | median s/image | total s | hits | mean handler s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, runs in (("off", off), ("on", on)):
        mean, median = _stats([r.e2e_s for r in runs])
        n_hits = sum(1 for r in runs if r.cache.get("hit"))
        print(
            f"| {label} | {len(runs)} | {mean:.3f} | {median:.3f} | {sum(r.e2e_s for r in runs):.1f} "
            f"| {n_hits} | {statistics.mean(r.handler_s for r in runs):.3f} |"
        )
    off_mean, off_median = _stats([r.e2e_s for r in off])
    on_mean, on_median = _stats([r.e2e_s for r in on])
    print(
        f"| on / off | | {on_mean / off_mean:.2f} | {on_median / off_median:.2f} | | | "
        f"{statistics.mean(r.handler_s for r in on) / statistics.mean(r.handler_s for r in off):.2f} |"
    )
    print("\nreference (AnimeGANv2, in-process LRU): 1.82 s -> 1.15 s per image (0.63)")
    hits = [r for r in on if r.cache.get("hit")]
    misses = [r for r in on if not r.cache.get("hit")]
    groups = (("render, cache off", off), ("miss, cache on (render + index)", misses), ("hit", hits))
    render_handler = statistics.median(r.handler_s for r in off)
    render_core = statistics.median(r.timings_ms["total"] for r in off)
    print("\n| upload | n | median end-to-end s | median handler ms | median pipeline ms | vs render |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs in groups:
        if not runs:
            continue
        handler_ms = statistics.median(r.handler_s for r in runs) * 1e3
        core_ms = statistics.median(r.timings_ms["total"] for r in runs)
        print(
            f"| {label} | {len(runs)} | {statistics.median(r.e2e_s for r in runs):.3f} | {handler_ms:.0f} "
            f"| {core_ms:.0f} | {handler_ms / 1e3 / render_handler:.3f} / {core_ms / render_core:.3f} |"
        )
    print(
        "\nvs render: median handler / median pipeline time of the group over those of renders with the "
        f"cache off; event delivery (polling) adds a median {statistics.median(r.delay_s for r in on):.3f} s "
        "to end-to-end"
    )
    stages = [
        s
        for s in ("probe", "read", "decode", "phash", "lookup", "copy", "render", "encode", "write", "index")
        if any(s in r.timings_ms for r in on + off)
    ]
    print("\n| upload | " + " | ".join(stages) + " |")
    print("|---|" + "---:|" * len(stages))
    for label, runs in groups:
        cells = (
            [f"{statistics.median(r.timings_ms.get(s, 0.0) for r in runs):.0f}" for s in stages]
            if runs
            else ["-"] * len(stages)
        )
        print(f"| {label} (median ms) | " + " | ".join(cells) + " |")
    ids = {pos: r.image_id for pos, r in enumerate(on)}
    right = sum(
        1
        for r in hits
        if r.item.repeat_of is not None and r.cache.get("source_image_id") == ids[r.item.repeat_of]
    )
    false = sum(1 for r in hits if r.item.repeat_of is None)
    missed = sum(1 for r in misses if r.item.repeat_of is not None)
    distances = sorted(int(r.cache.get("distance", -1)) for r in hits)
    print(
        f"\nhits: {len(hits)} of {repeats} repeats ({right} served from the upload they repeat, "
        f"{false} false hits, {missed} repeats missed); Hamming distances of the hits: "
        f"{' '.join(map(str, distances)) or '-'}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run every section (or only the workload) and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 10^6 row; 8 workload photos")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--workload", action="store_true", help="only the workload with 20 %% repeats on the local stack"
    )
    parser.add_argument("--phash", action="store_true", help="only the pHash timing")
    parser.add_argument("--photos", type=int, default=0, help="distinct photos in the workload (default 40)")
    parser.add_argument("--style", default=WORKLOAD_STYLE, choices=(*CPU_STYLES, "anime"))
    args = parser.parse_args(argv)
    repeat = 5 if args.quick else args.repeat
    photos = args.photos or (8 if args.quick else 40)
    if args.workload:
        bench_workload(photos, args.style, DEFAULT_THRESHOLD)
        return 0
    bench_phash(repeat)
    if args.phash:
        return 0
    bench_robustness()
    bench_lookup(DEFAULT_THRESHOLD, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
