"""The pHash index on DynamoDB: a Query per band bucket plus one GetItem; first-writer-wins puts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from atelier.adapters.aws.errors import translate
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
from atelier.ports import StoreError

_NEW = "attribute_not_exists(pk)"

# --- the item layout: one item per band bucket an entry falls in, and one exact-bytes item -------------

SHA_SORT_KEY = "sha"
TTL_ATTRIBUTE = "expires_at"  # the table's TimeToLive attribute (template.yaml)


def band_item(entry: Entry, partition_key: str) -> dict[str, str | int]:
    """The attributes of one band item (kept small: lookups read every item of a bucket)."""
    return {
        "pk": partition_key,
        "sk": hash_hex(entry.phash),
        "image_id": entry.image_id,
        "render_key": entry.render_key,
        "sha256": entry.sha256,
        "created_at": entry.created_at,
        TTL_ATTRIBUTE: entry.expires_at,
    }


def sha_item(entry: Entry) -> dict[str, str | int]:
    """The attributes of the exact-bytes item."""
    return {
        "pk": sha_partition_key(entry.style_fp, entry.sha256),
        "sk": SHA_SORT_KEY,
        "scope": entry.scope,
        "phash": hash_hex(entry.phash),
        "image_id": entry.image_id,
        "render_key": entry.render_key,
        "created_at": entry.created_at,
        TTL_ATTRIBUTE: entry.expires_at,
    }


def entry_from_band_item(item: Mapping[str, str | int], scope: str, style_fp: str) -> Entry:
    """The entry a band item describes."""
    return Entry(
        scope=scope,
        style_fp=style_fp,
        phash=int(str(item["sk"]), 16),
        sha256=str(item["sha256"]),
        image_id=str(item["image_id"]),
        render_key=str(item["render_key"]),
        created_at=int(item["created_at"]),
        expires_at=int(item[TTL_ATTRIBUTE]),
    )


def entry_from_sha_item(item: Mapping[str, str | int], style_fp: str, sha256: str) -> Entry:
    """The entry an exact-bytes item describes."""
    return Entry(
        scope=str(item["scope"]),
        style_fp=style_fp,
        phash=int(str(item["phash"]), 16),
        sha256=sha256.lower(),
        image_id=str(item["image_id"]),
        render_key=str(item["render_key"]),
        created_at=int(item["created_at"]),
        expires_at=int(item[TTL_ATTRIBUTE]),
    )


def item_size(item: Mapping[str, str | int]) -> int:
    """DynamoDB's size of an item: attribute names plus UTF-8 strings, numbers about 1 byte per 2 digits."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, int):
            size += 1 + (len(str(abs(value))) + 1) // 2
        else:
            size += len(value.encode())
    return size


def _to_ddb(item: Mapping[str, str | int]) -> dict[str, dict[str, str]]:
    """Plain attributes to DynamoDB's typed form."""
    return {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in item.items()}


def _from_ddb(item: Mapping[str, Mapping[str, str]]) -> dict[str, str | int]:
    """DynamoDB's typed form to plain attributes (strings and integers only)."""
    out: dict[str, str | int] = {}
    for name, typed in item.items():
        if "N" in typed:
            out[name] = int(typed["N"])
        elif "S" in typed:
            out[name] = typed["S"]
    return out


def _error_code(exc: ClientError) -> str:
    """The error code of a ClientError."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _only_condition_failures(exc: ClientError) -> bool:
    """Whether a cancelled transaction failed on conditions alone (another writer got there first)."""
    reasons = exc.response.get("CancellationReasons") or []
    codes = {str(r.get("Code", "None")) for r in reasons}
    if not reasons:
        return "ConditionalCheckFailed" in str(exc)
    return "ConditionalCheckFailed" in codes and codes <= {"ConditionalCheckFailed", "None"}


class DynamoHashIndex:
    """:class:`atelier.cache.HashIndex` on one DynamoDB table with a string ``pk``/``sk`` key."""

    def __init__(self, client: Any, table_name: str, threshold: int = DEFAULT_THRESHOLD) -> None:
        band_widths(threshold)
        self._client = client
        self._table = table_name
        self._threshold = threshold

    @property
    def threshold(self) -> int:
        """The Hamming distance the band layout guarantees to find."""
        return self._threshold

    def lookup(
        self, scope: str, style_fp: str, phash: int, sha256: str | None = None, *, now: int | None = None
    ) -> Lookup:
        """``threshold + 1`` Queries (more only if a bucket exceeds 1 MB) and one GetItem."""
        now = int(time.time()) if now is None else now
        stats = LookupStats()
        read: list[Entry] = []
        try:
            for pk in band_partition_keys(scope, style_fp, phash, self._threshold):
                kwargs: dict[str, Any] = {
                    "TableName": self._table,
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": {":pk": {"S": pk}},
                }
                while True:
                    page = self._client.query(**kwargs)
                    stats.requests += 1
                    for raw in page.get("Items", []):
                        item = _from_ddb(raw)
                        stats.items += 1
                        stats.bytes += item_size(item)
                        read.append(entry_from_band_item(item, scope, style_fp))
                    last = page.get("LastEvaluatedKey")
                    if not last:
                        break
                    kwargs["ExclusiveStartKey"] = last
            exact = None
            if sha256 is not None:
                got = self._client.get_item(
                    TableName=self._table,
                    Key={"pk": {"S": sha_partition_key(style_fp, sha256)}, "sk": {"S": SHA_SORT_KEY}},
                )
                stats.requests += 1
                if "Item" in got:
                    exact_item = _from_ddb(got["Item"])
                    stats.items += 1
                    stats.bytes += item_size(exact_item)
                    exact = entry_from_sha_item(exact_item, style_fp, sha256)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "pHash index lookup") from exc
        candidates, nearest = select(read, exact, phash, self._threshold, now)
        return Lookup(candidates, nearest, stats)

    def put(self, entry: Entry) -> bool:
        """Write every band item in one transaction, each on condition that it is new; then the exact item."""
        keys = band_partition_keys(entry.scope, entry.style_fp, entry.phash, self._threshold)
        actions = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _to_ddb(band_item(entry, pk)),
                    "ConditionExpression": _NEW,
                }
            }
            for pk in keys
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if _error_code(exc) == "TransactionCanceledException" and _only_condition_failures(exc):
                return False
            raise translate(exc, "pHash index put") from exc
        except BotoCoreError as exc:
            raise translate(exc, "pHash index put") from exc
        self._put_sha(entry)
        return True

    def _put_sha(self, entry: Entry) -> None:
        """The exact-bytes item, first writer wins; losing that race is harmless."""
        try:
            self._client.put_item(
                TableName=self._table, Item=_to_ddb(sha_item(entry)), ConditionExpression=_NEW
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc, "pHash index put") from exc
        except BotoCoreError as exc:
            raise translate(exc, "pHash index put") from exc

    def replace(self, entry: Entry, render_key: str, image_id: str | None = None) -> Entry:
        """Point a stale entry's band items and exact item at a fresh render, in one transaction."""
        fresh = Entry(
            entry.scope,
            entry.style_fp,
            entry.phash,
            entry.sha256,
            image_id or entry.image_id,
            render_key,
            entry.created_at,
            entry.expires_at,
        )
        keys = band_partition_keys(entry.scope, entry.style_fp, entry.phash, self._threshold)
        actions: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table, "Item": _to_ddb(band_item(fresh, pk))}} for pk in keys
        ]
        actions.append({"Put": {"TableName": self._table, "Item": _to_ddb(sha_item(fresh))}})
        try:
            self._client.transact_write_items(TransactItems=actions)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "pHash index replace") from exc
        return fresh

    def delete(self, entry: Entry) -> None:
        """Delete the band items; the exact item only if it still names this entry's render."""
        keys = band_partition_keys(entry.scope, entry.style_fp, entry.phash, self._threshold)
        sk = hash_hex(entry.phash)
        actions = [
            {"Delete": {"TableName": self._table, "Key": {"pk": {"S": pk}, "sk": {"S": sk}}}} for pk in keys
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)
            self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": sha_partition_key(entry.style_fp, entry.sha256)}, "sk": {"S": SHA_SORT_KEY}},
                ConditionExpression="render_key = :rk",
                ExpressionAttributeValues={":rk": {"S": entry.render_key}},
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc, "pHash index delete") from exc
        except BotoCoreError as exc:
            raise translate(exc, "pHash index delete") from exc


__all__ = ["DynamoHashIndex", "StoreError"]
