"""The S3 object store adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from atelier.adapters.aws.errors import translate
from atelier.ports import NotFound, ObjectHead

_ERRORS = (ClientError, BotoCoreError)


class S3ObjectStore:
    """ObjectStore over one bucket; the boto3 client is built once per container and passed in."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def head(self, key: str) -> ObjectHead:
        """HeadObject."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except _ERRORS as exc:
            raise translate(exc, f"HeadObject {key}") from exc
        return ObjectHead(
            key=key,
            size=int(r["ContentLength"]),
            etag=str(r.get("ETag", "")).strip('"'),
            content_type=r.get("ContentType", ""),
            metadata=dict(r.get("Metadata", {})),
        )

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """A ranged GetObject."""
        if length <= 0:
            return b""
        try:
            r = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            return bytes(r["Body"].read())
        except _ERRORS as exc:
            raise translate(exc, f"GetObject {key} (range)") from exc

    def read(self, key: str, expected_etag: str | None = None) -> bytes:
        """GetObject, pinned to the ETag the caps were checked on."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if expected_etag:
            kwargs["IfMatch"] = f'"{expected_etag}"'
        try:
            return bytes(self.client.get_object(**kwargs)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise NotFound(f"{key} changed after it was checked") from exc
            raise translate(exc, f"GetObject {key}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"GetObject {key}") from exc

    def put(
        self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        """PutObject."""
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata=dict(metadata or {}),
            )
        except _ERRORS as exc:
            raise translate(exc, f"PutObject {key}") from exc

    def copy(
        self,
        source_key: str,
        dest_key: str,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "",
    ) -> None:
        """CopyObject: the bytes stay in S3; new metadata replace the source's, ContentType included."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": dest_key,
            "CopySource": {"Bucket": self.bucket, "Key": source_key},
        }
        if metadata is not None or content_type:
            kwargs.update(Metadata=dict(metadata or {}), MetadataDirective="REPLACE")
        if content_type:
            kwargs["ContentType"] = content_type
        try:
            self.client.copy_object(**kwargs)
        except _ERRORS as exc:
            raise translate(exc, f"CopyObject {source_key} -> {dest_key}") from exc

    def exists(self, key: str) -> bool:
        """HeadObject, answered as a boolean."""
        try:
            self.head(key)
        except NotFound:
            return False
        return True


def object_of(event: Mapping[str, Any]) -> tuple[str, str]:
    """The key (decoded) and ETag of an S3 "Object Created" event."""
    obj = event["detail"]["object"]
    return unquote_plus(obj["key"]), str(obj.get("etag", "")).strip('"')
