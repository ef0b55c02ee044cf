"""The DynamoDB status store adapter: one item per (image_id, style)."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from atelier.adapters.aws.errors import translate
from atelier.ports import StoreError

_ser = TypeSerializer()
_de = TypeDeserializer()
BY_OWNER = "ByOwner"  # the status table's index of image records by owner (template.yaml)


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


class DynamoStatusStore:
    """StatusStore over the status table."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _item(image_id: str, style: str, item: Mapping[str, Any]) -> dict[str, Any]:
        full = {**_to_dynamo(dict(item)), "image_id": image_id, "style": style}
        return {k: _ser.serialize(v) for k, v in full.items()}

    def put_status(
        self,
        image_id: str,
        style: str,
        item: Mapping[str, Any],
        *,
        unless_state: Sequence[str] = (),
        unless_job: str = "",
    ) -> bool:
        """PutItem, replacing the earlier state; with ``unless_state``, a conditional PutItem."""
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": self._item(image_id, style, item)}
        if unless_state:
            values = {f":s{i}": {"S": state} for i, state in enumerate(unless_state)}
            condition = f"attribute_not_exists(#state) OR NOT #state IN ({', '.join(values)})"
            names = {"#state": "state"}
            if unless_job:
                condition += " OR attribute_not_exists(#job) OR #job <> :job"
                names["#job"] = "job"
                values[":job"] = {"S": unless_job}
            kwargs["ConditionExpression"] = condition
            kwargs["ExpressionAttributeNames"] = names
            kwargs["ExpressionAttributeValues"] = values
        try:
            self.client.put_item(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise translate(exc, f"PutItem {image_id}/{style}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"PutItem {image_id}/{style}") from exc
        return True

    def put_many(self, image_id: str, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """BatchWriteItem (25 items a call), retrying what DynamoDB leaves unprocessed."""
        requests = [{"PutRequest": {"Item": self._item(image_id, style, item)}} for style, item in items]
        try:
            for start in range(0, len(requests), 25):
                pending = {self.table: requests[start : start + 25]}
                for attempt in range(6):
                    answer = self.client.batch_write_item(RequestItems=pending)
                    pending = answer.get("UnprocessedItems") or {}
                    if not pending:
                        break
                    time.sleep(0.05 * 2**attempt)
                else:
                    raise StoreError(f"BatchWriteItem {image_id}: items left unprocessed")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"BatchWriteItem {image_id}") from exc

    def get_status(self, image_id: str) -> list[dict[str, Any]]:
        """Query every item of the image."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "image_id = :i",
            "ExpressionAttributeValues": {":i": {"S": image_id}},
            "ConsistentRead": True,
        }
        try:
            while True:
                page = self.client.query(**kwargs)
                items += [
                    _from_dynamo({k: _de.deserialize(v) for k, v in it.items()}) for it in page["Items"]
                ]
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"Query {image_id}") from exc

    def list_images(self, owner: str, limit: int, cursor: str | None = None) -> tuple[list[str], str | None]:
        """Query the ByOwner index newest first; the cursor is DynamoDB's LastEvaluatedKey, base64 JSON."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": BY_OWNER,
            "KeyConditionExpression": "listing_owner = :o",
            "ExpressionAttributeValues": {":o": {"S": owner}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = _decode_cursor(cursor, owner)
        try:
            page = self.client.query(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"Query {BY_OWNER}") from exc
        ids = [item["image_id"]["S"] for item in page["Items"]]
        last = page.get("LastEvaluatedKey")
        return ids, (base64.urlsafe_b64encode(json.dumps(last).encode()).decode() if last else None)


def _decode_cursor(cursor: str, owner: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("the cursor is not one this API gave") from exc
    if not isinstance(key, dict) or key.get("listing_owner") != {"S": owner}:
        raise ValueError("the cursor is not one this API gave")
    return key
