"""The DynamoDB pHash index against moto's server over HTTP, on a table created from template.yaml."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from atelier.adapters.aws.dynamo_index import TTL_ATTRIBUTE, DynamoHashIndex
from atelier.cache import CachePolicy, band_partition_keys, find_reusable, new_entry
from atelier.ports import StoreError
from atelier_dev.local import strict_moto

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
STYLE = "oil:v1:size=7,ratio=1"
NOW = 1_900_000_000

# A copy of the PhashIndexTable resource, used only while template.yaml does not define it yet.
# Remove it once the resource is in template.yaml (the helper below then reads the template alone).
FALLBACK_SNIPPET = """
PhashIndexTable:
  Type: AWS::DynamoDB::Table
  DeletionPolicy: Delete
  UpdateReplacePolicy: Delete
  Properties:
    BillingMode: PAY_PER_REQUEST
    AttributeDefinitions:
      - AttributeName: pk
        AttributeType: S
      - AttributeName: sk
        AttributeType: S
    KeySchema:
      - AttributeName: pk
        KeyType: HASH
      - AttributeName: sk
        KeyType: RANGE
    TimeToLiveSpecification:
      AttributeName: expires_at
      Enabled: true
    SSESpecification:
      SSEEnabled: true
"""


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that accepts CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, ...)."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    """Keep a tagged node as ``{"Fn::<name>": value}`` (``Ref`` for !Ref)."""
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def phash_table_resource(template: Path = TEMPLATE) -> dict[str, Any]:
    """The ``PhashIndexTable`` resource from template.yaml, or the fallback copy while it is absent."""
    if template.exists():
        doc = yaml.load(template.read_text(encoding="utf-8"), Loader=_CfnLoader)
        resource = (doc.get("Resources") or {}).get("PhashIndexTable")
        if resource is not None:
            return dict(resource)
    return dict(yaml.load(FALLBACK_SNIPPET, Loader=_CfnLoader)["PhashIndexTable"])


def create_phash_table(client: Any, name: str, resource: dict[str, Any]) -> str:
    """Create the table the resource describes (keys, billing, TTL); returns its TTL attribute."""
    assert resource["Type"] == "AWS::DynamoDB::Table"
    props = resource["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in props:
            kwargs[index_kind] = props[index_kind]
    client.create_table(**kwargs)
    ttl = props["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
    )
    return str(ttl["AttributeName"])


def _free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's server on a free loopback port, for this module."""
    port = _free_port()
    strict_moto.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def client(endpoint: str) -> Any:
    """A DynamoDB client that talks HTTP to the moto server."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def table(client: Any) -> str:
    """A fresh table built from the template's PhashIndexTable resource."""
    name = f"phash-{uuid.uuid4().hex[:8]}"
    create_phash_table(client, name, phash_table_resource())
    return name


def _entry(phash: int, scope: str = "alice", image_id: str = "img-1", sha: str = "c" * 64) -> Any:
    """An entry valid for an hour after NOW."""
    return new_entry(
        scope, STYLE, phash, sha, image_id, f"renders/{image_id}/oil.jpg", CachePolicy(), now=NOW
    )


def test_table_comes_from_the_template_resource(client: Any, table: str) -> None:
    """Key schema, on-demand billing and the TTL attribute are the resource's."""
    described = client.describe_table(TableName=table)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == TTL_ATTRIBUTE and ttl["TimeToLiveStatus"] in {"ENABLED", "ENABLING"}


def test_put_then_lookup_finds_near_duplicates_with_t_plus_two_requests(client: Any, table: str) -> None:
    """A stored hash is found at distance 3 with t + 1 Queries and one GetItem; another owner misses."""
    index = DynamoHashIndex(client, table, threshold=5)
    stored = 0x8F00_FF00_1234_ABCD
    assert index.put(_entry(stored))
    query = stored ^ 0b1001 ^ (1 << 63)
    lookup = index.lookup("alice", STYLE, query, "c" * 64, now=NOW)
    assert [(c.entry.image_id, c.distance) for c in lookup.candidates] == [("img-1", 3)]
    assert lookup.exact is not None and lookup.exact.entry.scope == "alice"
    assert lookup.stats.requests == 5 + 2
    assert index.lookup("bob", STYLE, query, now=NOW).candidates == []
    decision = find_reusable(index, "alice", STYLE, query, None, CachePolicy(threshold=5), now=NOW)
    assert decision.hit and decision.candidate is not None
    assert decision.candidate.entry.render_key == "renders/img-1/oil.jpg"


def test_items_carry_the_ttl_attribute(client: Any, table: str) -> None:
    """Every band item stores expires_at as a number, so DynamoDB's TTL can delete it."""
    index = DynamoHashIndex(client, table, threshold=5)
    e = _entry(77)
    index.put(e)
    for pk in band_partition_keys("alice", STYLE, 77, 5):
        items = client.query(
            TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}}
        )["Items"]
        assert [item[TTL_ATTRIBUTE] for item in items] == [{"N": str(e.expires_at)}]
    assert index.lookup("alice", STYLE, 77, now=e.expires_at).candidates == []


def test_concurrent_double_put_leaves_one_entry(client: Any, table: str, endpoint: str) -> None:
    """Two writers of the same hash at once: one wins, the other reports False, one item per band."""
    stored = 0x0BAD_CAFE_0000_0001
    barrier = threading.Barrier(2)
    results: list[bool] = []
    errors: list[BaseException] = []

    def writer(image_id: str) -> None:
        own = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        try:
            barrier.wait()
            results.append(DynamoHashIndex(own, table, threshold=5).put(_entry(stored, image_id=image_id)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False, True]
    keys = band_partition_keys("alice", STYLE, stored, 5)
    owners = set()
    for pk in keys:
        items = client.query(
            TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}}
        )["Items"]
        assert len(items) == 1
        owners.add(items[0]["image_id"]["S"])
    assert len(owners) == 1


def test_replace_and_delete_repair_a_stale_entry(client: Any, table: str) -> None:
    """replace re-points every item at the fresh render; delete removes them all."""
    index = DynamoHashIndex(client, table, threshold=5)
    e = _entry(5150)
    index.put(e)
    fresh = index.replace(e, "renders/img-2/oil.jpg", image_id="img-2")
    lookup = index.lookup("alice", STYLE, 5150, "c" * 64, now=NOW)
    assert [c.entry.render_key for c in lookup.candidates] == ["renders/img-2/oil.jpg"]
    assert lookup.exact is not None and lookup.exact.entry.render_key == "renders/img-2/oil.jpg"
    index.delete(fresh)
    after = index.lookup("alice", STYLE, 5150, "c" * 64, now=NOW)
    assert after.candidates == [] and after.exact is None


def test_client_errors_become_store_errors(client: Any) -> None:
    """A missing table surfaces as the project's StoreError, not botocore's ClientError."""
    index = DynamoHashIndex(client, "no-such-table", threshold=5)
    with pytest.raises(StoreError):
        index.lookup("alice", STYLE, 1, now=NOW)
    with pytest.raises(StoreError):
        index.put(_entry(1))
