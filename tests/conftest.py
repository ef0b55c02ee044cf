"""Shared test setup. ``atelier`` is imported first so OpenCV's decode limits are set before cv2 loads."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import atelier  # noqa: F401  (before anything that loads cv2)
from atelier.config import AppConfig
from atelier.domain.limits import Limits
from atelier_dev.local import strict_moto
from atelier_dev.local.api_server import dev_claims, http_api_event
from atelier_dev.local.cfn import LocalTemplate
from atelier_dev.local.dispatcher import LambdaContext

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class MotoAws:
    """The template's bucket and tables inside moto's in-process mock, and the functions' environment."""

    s3: Any
    dynamodb: Any
    bucket: str
    env: dict[str, str]
    sqs: Any = None
    queue_urls: dict[str, str] = field(default_factory=dict)  # by logical id

    def config(self, limits: Limits | None = None) -> AppConfig:
        """The application's settings for these resources (no near-duplicate cache unless asked)."""
        return AppConfig(
            self.bucket,
            self.env["ATELIER_STATUS_TABLE"],
            self.env["ATELIER_IDEMPOTENCY_TABLE"],
            limits or Limits(),
            dead_letter_queue=self.queue_urls.get("RenderDeadLetterQueue", ""),
        )

    def messages(self, queue: str) -> list[dict[str, Any]]:
        """Every message now in the queue ``queue`` (a logical id), as JSON when it is JSON, left there."""
        got = self.sqs.receive_message(
            QueueUrl=self.queue_urls[queue], MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        out = []
        for message in got:
            try:
                out.append(json.loads(message["Body"]))
            except ValueError:
                out.append({"body": message["Body"]})
        return out


def lambda_context(function: str) -> LambdaContext:
    """The context Lambda passes ``function`` (a logical id of template.yaml), as the dispatcher builds it."""
    functions = LocalTemplate.from_file(ROOT / "template.yaml").functions()
    spec = next(f for f in functions if f.logical_id == function)
    return LambdaContext(spec, str(uuid.uuid4()))


def call_api(
    handler: Any, method: str, path: str, body: Any = None, sub: str | None = "dev-user"
) -> tuple[int, Any]:
    """One request to the API function as API Gateway sends it (``sub``'s dev claims; None: no claims);
    ``path`` may carry a query string."""
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    claims = dev_claims(sub, "https://issuer.example") if sub is not None else {}
    path, _, query = path.partition("?")
    event = http_api_event(
        method,
        path,
        query,
        {"content-type": "application/json"},
        raw,
        claims=claims,
        route_key=f"{method} {path}",
        domain="api.example",
    )
    response = handler(event, lambda_context("ApiFunction"))
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoAws]:
    """Buckets and tables made from template.yaml (never a second copy of the schema) under moto."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Atelier",
    }.items():
        monkeypatch.setenv(name, value)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(var, raising=False)
    strict_moto.install()  # DynamoDB's transactions are serializable; moto's are not on their own
    with mock_aws():
        tpl = LocalTemplate.from_file(ROOT / "template.yaml")
        s3, dynamodb, sqs = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sqs")
        bucket = tpl.name_of("PhotoBucket")
        s3.create_bucket(Bucket=bucket)
        for table in tpl.tables():
            dynamodb.create_table(**table.create_kwargs)
        urls = {q.logical_id: sqs.create_queue(QueueName=q.name)["QueueUrl"] for q in tpl.queues()}
        yield MotoAws(s3, dynamodb, bucket, tpl.function_environment(), sqs, urls)
