"""The SQS job queue adapter for the GPU worker."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from atelier.aws.errors import translate
from atelier.worker import Message


class SqsJobQueue:
    """JobQueue over one SQS queue; the boto3 client is passed in."""

    def __init__(self, client: Any, queue_url: str, wait_seconds: int = 20) -> None:
        self.client = client
        self.url = queue_url
        self.wait_seconds = wait_seconds

    def receive(self, visibility: int) -> list[Message]:
        """Long-poll for one message, leased for ``visibility`` seconds."""
        try:
            r = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=self.wait_seconds,
                VisibilityTimeout=visibility,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ReceiveMessage") from exc
        return [
            Message(
                m["MessageId"],
                m["ReceiptHandle"],
                m["Body"],
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in r.get("Messages", [])
        ]

    def extend(self, message: Message, seconds: int) -> None:
        """ChangeMessageVisibility: the lease now ends ``seconds`` from now."""
        try:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ChangeMessageVisibility") from exc

    def delete(self, message: Message) -> None:
        """DeleteMessage: the job is done for good."""
        try:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "DeleteMessage") from exc
