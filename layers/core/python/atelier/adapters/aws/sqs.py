"""The SQS adapters: the GPU worker's job queue, and the dead-letter queues."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from atelier.adapters.aws.errors import translate
from atelier.worker import Message


class SqsJobQueue:
    """JobQueue over one SQS queue; the boto3 client is passed in.

    Its dead-letter queue and ``max_receives`` come from the queue's own RedrivePolicy (the template's), read
    once by :meth:`redrive`.
    """

    def __init__(self, client: Any, queue_url: str, wait_seconds: int = 20) -> None:
        self.client = client
        self.url = queue_url
        self.wait_seconds = wait_seconds
        self._redrive: tuple[str, int] | None = None

    def redrive(self) -> tuple[str, int] | None:
        """(dead-letter queue URL, maxReceiveCount) of the queue's RedrivePolicy; None without one."""
        if self._redrive is None:
            try:
                attrs = self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy"])
                policy = attrs.get("Attributes", {}).get("RedrivePolicy")
                if not policy:
                    return None
                parsed = json.loads(policy)
                name = str(parsed["deadLetterTargetArn"]).rsplit(":", 1)[-1]
                url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "GetQueueAttributes") from exc
            self._redrive = (url, int(parsed["maxReceiveCount"]))
        return self._redrive

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

    def dead_letter(self, message: Message) -> None:
        """Move the message, body unchanged (so a redrive can send it back), to the dead-letter queue."""
        redrive = self.redrive()
        if redrive is None:
            raise ValueError(f"{self.url} has no RedrivePolicy: nowhere to move {message.id}")
        try:
            self.client.send_message(QueueUrl=redrive[0], MessageBody=message.body)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "SendMessage (dead letter)") from exc
        self.delete(message)


class SqsDeadLetters:
    """DeadLetters over an SQS queue: one message per failed job, its body the record as JSON."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.url = queue_url

    def send(self, record: Mapping[str, Any]) -> None:
        """SendMessage."""
        try:
            self.client.send_message(QueueUrl=self.url, MessageBody=json.dumps(record, default=str))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "SendMessage (dead letter)") from exc
