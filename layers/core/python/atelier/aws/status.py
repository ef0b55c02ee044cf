"""The DynamoDB status store adapter: one item per (image_id, style)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from atelier.aws.errors import translate

_ser = TypeSerializer()
_de = TypeDeserializer()


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

    def put_status(self, image_id: str, style: str, item: Mapping[str, Any]) -> None:
        """PutItem, replacing the earlier state of the same (image, style)."""
        full = {**_to_dynamo(dict(item)), "image_id": image_id, "style": style}
        try:
            self.client.put_item(TableName=self.table, Item={k: _ser.serialize(v) for k, v in full.items()})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"PutItem {image_id}/{style}") from exc

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
