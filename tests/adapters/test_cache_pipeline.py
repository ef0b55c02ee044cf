"""The near-duplicate cache in the render pipeline, under moto: hits, misses, scope, repair, concurrency."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from atelier.adapters.aws.dynamo_index import DynamoHashIndex
from atelier.adapters.aws.s3 import S3ObjectStore
from atelier.adapters.aws.status import DynamoStatusStore
from atelier.cache import CachePolicy
from atelier.domain import status
from atelier.domain.limits import Limits
from atelier.domain.status import Board
from atelier.imaging.styles import get
from atelier.pipeline import Cache, StyleJob, render_object
from tests.aws import MotoAws

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class World:
    s3: Any
    ddb: Any
    bucket: str
    store: S3ObjectStore
    status: DynamoStatusStore
    cache: Cache
    index_table: str
    renders: list[str]

    def upload(self, key: str, body: bytes, owner: str | None = None) -> str:
        meta = {"owner": owner} if owner else {}
        return str(
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=meta)["ETag"].strip('"')
        )

    def render(self, key: str, etag: str, job: StyleJob | None = None) -> dict[str, Any]:
        job = job or sketch_job()
        board = Board(self.status, 86400)
        deadline = int(time.time()) + 60
        out = render_object(self.store, board, key, etag, job, Limits(), deadline, cache=self.cache)
        return out.as_dict()

    def index_items(self) -> int:
        return len(self.ddb.scan(TableName=self.index_table)["Items"])


def sketch_job(**params: Any) -> StyleJob:
    style = get("sketch")
    renders: list[str] = []

    def render(bgr: np.ndarray) -> np.ndarray:
        renders.append("rendered")
        return style.render(bgr, **params)

    job = StyleJob("sketch", style.fingerprint(params), render)
    job.render.calls = renders  # type: ignore[attr-defined]
    return job


def calls(job: StyleJob) -> int:
    return len(job.render.calls)  # type: ignore[attr-defined]


@pytest.fixture
def world(moto_aws: MotoAws) -> World:
    policy = CachePolicy(threshold=6)
    table = moto_aws.env["ATELIER_PHASH_TABLE"]
    return World(
        moto_aws.s3,
        moto_aws.dynamodb,
        moto_aws.bucket,
        S3ObjectStore(moto_aws.s3, moto_aws.bucket),
        DynamoStatusStore(moto_aws.dynamodb, moto_aws.env["ATELIER_STATUS_TABLE"]),
        Cache(DynamoHashIndex(moto_aws.dynamodb, table, policy.threshold), policy),
        table,
        [],
    )


def photo(name: str = "chelsea.jpg", quality: int = 92, scale: float = 1.0) -> bytes:
    img = cv2.imread(str(ROOT / "samples" / name))
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def test_renamed_reencoded_copy_is_served_from_the_earlier_render(world: World) -> None:
    job = sketch_job()
    first = world.render("incoming/sketch/cat.jpg", world.upload("incoming/sketch/cat.jpg", photo()), job)
    assert first["state"] == "done" and first["cache"] == {"hit": False} and calls(job) == 1
    variant = photo(quality=70, scale=0.6)  # re-encoded, resized, metadata-free, new name
    second = world.render(
        "incoming/sketch/IMG_0042.jpg", world.upload("incoming/sketch/IMG_0042.jpg", variant), job
    )
    assert calls(job) == 1  # no second render
    assert second["state"] == "done" and second["cache"]["hit"] is True
    assert second["cache"]["source_image_id"] == first["image_id"]
    assert 0 <= second["cache"]["distance"] <= 6 and second["cache"]["reason"] == "near_duplicate"
    copied = world.s3.get_object(Bucket=world.bucket, Key=second["output_key"])["Body"].read()
    original = world.s3.get_object(Bucket=world.bucket, Key=first["output_key"])["Body"].read()
    assert copied == original  # a server-side copy of the earlier render
    item = {i["style"]: i for i in world.status.get_status(second["image_id"])}["sketch"]
    assert item["cache"]["hit"] is True and item["cache"]["distance"] == second["cache"]["distance"]


def test_a_different_photo_is_a_miss(world: World) -> None:
    job = sketch_job()
    world.render("incoming/sketch/cat.jpg", world.upload("incoming/sketch/cat.jpg", photo()), job)
    other = world.render(
        "incoming/sketch/moon.jpg", world.upload("incoming/sketch/moon.jpg", photo("astronaut.jpg")), job
    )
    assert other["cache"] == {"hit": False} and calls(job) == 2


def test_another_owners_near_duplicate_is_a_miss(world: World) -> None:
    job = sketch_job()
    world.render("incoming/sketch/a.jpg", world.upload("incoming/sketch/a.jpg", photo(), owner="alice"), job)
    bob = world.render(
        "incoming/sketch/b.jpg", world.upload("incoming/sketch/b.jpg", photo(quality=80), owner="bob"), job
    )
    assert bob["cache"] == {"hit": False} and calls(job) == 2
    # and byte-identical bytes are shared across owners only when configured, which it is not here
    carol = world.render(
        "incoming/sketch/c.jpg", world.upload("incoming/sketch/c.jpg", photo(), owner="carol"), job
    )
    assert carol["cache"] == {"hit": False}


def test_byte_identical_photo_of_another_owner_is_reused_only_when_allowed(world: World) -> None:
    world.cache = Cache(world.cache.index, CachePolicy(threshold=6, cross_owner_exact=True))
    job = sketch_job()
    world.render("incoming/sketch/a.jpg", world.upload("incoming/sketch/a.jpg", photo(), owner="alice"), job)
    same = world.render(
        "incoming/sketch/b.jpg", world.upload("incoming/sketch/b.jpg", photo(), owner="bob"), job
    )
    assert same["cache"]["hit"] is True and same["cache"]["reason"] == "same_bytes_other_owner"
    near = world.render(
        "incoming/sketch/c.jpg", world.upload("incoming/sketch/c.jpg", photo(quality=80), owner="bob"), job
    )
    assert near["cache"] == {"hit": False}  # not the same bytes: never another owner's render


def test_a_changed_style_parameter_is_a_miss(world: World) -> None:
    world.render("incoming/sketch/a.jpg", world.upload("incoming/sketch/a.jpg", photo()), sketch_job())
    params = dict(get("sketch").defaults)
    name, value = next(iter(params.items()))
    changed = sketch_job(**{name: type(value)(value * 2 if value else 1)})
    again = world.render("incoming/sketch/b.jpg", world.upload("incoming/sketch/b.jpg", photo()), changed)
    assert again["cache"] == {"hit": False} and calls(changed) == 1


def test_entry_whose_render_was_deleted_renders_again_and_repairs_itself(world: World) -> None:
    job = sketch_job()
    first = world.render("incoming/sketch/a.jpg", world.upload("incoming/sketch/a.jpg", photo()), job)
    world.s3.delete_object(Bucket=world.bucket, Key=first["output_key"])
    second = world.render(
        "incoming/sketch/b.jpg", world.upload("incoming/sketch/b.jpg", photo(quality=85)), job
    )
    assert second["state"] == "done" and calls(job) == 2  # fell back to rendering
    third = world.render(
        "incoming/sketch/c.jpg", world.upload("incoming/sketch/c.jpg", photo(quality=80)), job
    )
    assert third["cache"]["hit"] is True and third["cache"]["source_image_id"] == second["image_id"]
    assert calls(job) == 2  # the repaired entry points at the second render


def test_concurrent_double_upload_leaves_one_index_entry(world: World) -> None:
    body = photo()
    etags = [world.upload(f"incoming/sketch/twin{i}.jpg", body) for i in range(2)]
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def go(i: int) -> None:
        barrier.wait()
        results.append(world.render(f"incoming/sketch/twin{i}.jpg", etags[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["state"] for r in results] == ["done", "done"]
    bands = world.cache.policy.threshold + 1
    assert world.index_items() == bands + 1  # one entry: its band items and its exact-bytes item


def test_a_cache_hit_is_stored_with_the_renders_content_type_and_reports_its_size(world: World) -> None:
    job = sketch_job()
    first = world.render("incoming/sketch/a.jpg", world.upload("incoming/sketch/a.jpg", photo()), job)
    variant = photo(quality=70, scale=0.6)
    second = world.render("incoming/sketch/b.jpg", world.upload("incoming/sketch/b.jpg", variant), job)
    assert second["cache"]["hit"] is True and calls(job) == 1
    head = world.s3.head_object(Bucket=world.bucket, Key=second["output_key"])
    assert head["ContentType"] == "image/jpeg"  # REPLACE without a ContentType stores binary/octet-stream
    assert head["Metadata"]["image-id"] == second["image_id"]
    assert (second["width"], second["height"]) == (first["width"], first["height"])  # the render reused
    item = {i["style"]: i for i in world.status.get_status(second["image_id"])}["sketch"]
    assert (item["width"], item["height"]) == (first["width"], first["height"]) and item["format"] == "jpeg"
    assert item["size_bytes"] == first["size_bytes"]


def test_a_cache_hit_on_a_render_without_size_metadata_reads_its_size_from_the_header(world: World) -> None:
    job = sketch_job()
    first = world.render("incoming/sketch/a.png", world.upload("incoming/sketch/a.png", png_photo()), job)
    # a render stored before renders carried their size: only its ContentType and image id
    world.s3.copy_object(
        Bucket=world.bucket,
        Key=first["output_key"],
        CopySource={"Bucket": world.bucket, "Key": first["output_key"]},
        Metadata={"image-id": first["image_id"]},
        ContentType="image/png",
        MetadataDirective="REPLACE",
    )
    second = world.render("incoming/sketch/b.png", world.upload("incoming/sketch/b.png", png_photo()), job)
    assert second["cache"]["hit"] is True and calls(job) == 1
    assert world.s3.head_object(Bucket=world.bucket, Key=second["output_key"])["ContentType"] == "image/png"
    assert (second["width"], second["height"]) == (first["width"], first["height"])


def png_photo() -> bytes:
    img = cv2.imread(str(ROOT / "samples" / "chelsea.jpg"))
    ok, buf = cv2.imencode(".png", cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    assert ok
    return buf.tobytes()


def test_a_decoders_harmless_warning_reaches_the_status_and_the_api_view(world: World) -> None:
    clean = photo()
    sof = clean.find(b"\xff\xc0")
    odd = clean[:sof] + b"\x00\x11" + clean[sof:]  # stray bytes between segments: libjpeg skips them
    out = world.render("incoming/sketch/odd.jpg", world.upload("incoming/sketch/odd.jpg", odd))
    assert out["state"] == "done"
    assert out["warnings"] == [f"2 stray byte(s) at byte {sof} before a JPEG marker, skipped"]
    items = world.status.get_status(out["image_id"])
    item = {i["style"]: i for i in items}["sketch"]
    assert item["warnings"] == out["warnings"]
    record = {"style": status.IMAGE_RECORD, "owner": item.get("owner", ""), "styles": ["sketch"]}
    view = status.view(out["image_id"], [record, item], str(record["owner"]), int(time.time()))
    assert view is not None and view["styles"][0]["warnings"] == out["warnings"]


def test_every_render_has_a_small_webp_preview_and_a_cache_hit_copies_it(world: World) -> None:
    job = sketch_job()
    big = photo(scale=4.0)  # 1804x1200: its preview is 1280 wide
    first = world.render("incoming/sketch/big.jpg", world.upload("incoming/sketch/big.jpg", big), job)
    preview = world.s3.get_object(Bucket=world.bucket, Key=first["preview_key"])
    assert preview["ContentType"] == "image/webp"
    small = cv2.imdecode(np.frombuffer(preview["Body"].read(), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape[:2] == (round(first["height"] * 1280 / first["width"]), 1280)
    second = world.render("incoming/sketch/again.jpg", world.upload("incoming/sketch/again.jpg", big), job)
    assert second["cache"]["hit"] is True and calls(job) == 1
    assert second["preview_key"] == f"renders/previews/{second['image_id']}/sketch.webp"
    copied = world.s3.get_object(Bucket=world.bucket, Key=second["preview_key"])["Body"].read()
    original = world.s3.get_object(Bucket=world.bucket, Key=first["preview_key"])["Body"].read()
    assert copied == original
