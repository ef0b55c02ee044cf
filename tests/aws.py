"""Shared by the adapters tier: the template's resources under moto, and Lambda's events and context."""

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atelier.config import AppConfig
from atelier.domain.limits import Limits
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
