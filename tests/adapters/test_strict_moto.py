"""The local stack's DynamoDB isolates a transaction from concurrent writes, as DynamoDB does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from atelier_dev.local import strict_moto

TABLE = "strict"


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield ddb


def _put(pk: str, owner: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": TABLE,
            "Item": {"pk": {"S": pk}, "owner": {"S": owner}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def test_a_cancelled_transaction_does_not_erase_a_concurrent_write(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write landing while a transaction that will be cancelled is in flight survives the rollback.

    The transaction puts ``a`` then ``taken`` (which exists, so it is cancelled). While it is between the
    two, another request puts ``b``. moto alone restores its snapshot over ``b``; DynamoDB never does.
    """
    strict_moto.install()
    client.put_item(TableName=TABLE, Item={"pk": {"S": "taken"}, "owner": {"S": "earlier"}})
    in_window, b_done = threading.Event(), threading.Event()
    inner = DynamoDBBackend.put_item

    def put_item(
        self: DynamoDBBackend, table_name: str, item_attrs: dict[str, Any], *a: Any, **kw: Any
    ) -> Any:
        result = inner(self, table_name, item_attrs, *a, **kw)
        if item_attrs["pk"] == {"S": "a"}:
            in_window.set()
            b_done.wait(timeout=1.0)  # serialized: b waits for the lock, so this times out
        return result

    monkeypatch.setattr(DynamoDBBackend, "put_item", put_item)
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            assert in_window.wait(timeout=10)
            client.put_item(TableName=TABLE, Item={"pk": {"S": "b"}, "owner": {"S": "other"}})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            b_done.set()

    thread = threading.Thread(target=other_writer)
    thread.start()
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=[_put("a", "tx"), _put("taken", "tx")])
    thread.join(timeout=30)
    assert errors == []
    assert "Item" not in client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    assert client.get_item(TableName=TABLE, Key={"pk": {"S": "b"}})["Item"]["owner"] == {"S": "other"}


def test_install_is_idempotent() -> None:
    strict_moto.install()
    once = DynamoDBBackend.transact_write_items
    strict_moto.install()
    assert DynamoDBBackend.transact_write_items is once
