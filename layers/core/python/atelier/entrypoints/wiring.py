"""The one place that builds AWS clients and plugs the adapters into the core.

Endpoints come from the standard ``AWS_ENDPOINT_URL*`` variables, so the same code runs against real AWS,
LocalStack, or the local stack of :mod:`atelier_dev.local`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from atelier.adapters.aws.dynamo_index import DynamoHashIndex
from atelier.adapters.aws.s3 import S3ObjectStore
from atelier.adapters.aws.sqs import SqsDeadLetters
from atelier.adapters.aws.status import DynamoStatusStore
from atelier.cache import CachePolicy
from atelier.config import AppConfig
from atelier.domain.status import Board
from atelier.pipeline import Cache
from atelier.ports import DeadLetters

# Standard retry mode retries throttling and 5xx with backoff; what is left after it reaches the handler
# as a TransientStoreError and Lambda's own retries take over.
CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=3,
    read_timeout=20,
    s3={"addressing_style": "path" if os.environ.get("ATELIER_S3_PATH_STYLE") == "1" else "auto"},
)


@dataclass
class Adapters:
    """The store adapters and the raw clients they wrap, built once per container."""

    config: AppConfig
    s3: Any
    dynamodb: Any
    store: S3ObjectStore
    status: DynamoStatusStore
    board: Board
    cache: Cache | None
    sqs: Any
    dead_letters: DeadLetters | None


def client(service: str) -> Any:
    """A boto3 client with the project's retry and timeout settings."""
    return boto3.session.Session().client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]


def build(config: AppConfig | None = None) -> Adapters:
    """Build clients and adapters from the environment."""
    config = config or AppConfig.from_env()
    s3 = client("s3")
    dynamodb = client("dynamodb")
    sqs = client("sqs")
    status = DynamoStatusStore(dynamodb, config.status_table)
    return Adapters(
        config=config,
        s3=s3,
        dynamodb=dynamodb,
        store=S3ObjectStore(s3, config.bucket),
        status=status,
        board=Board(status, config.status_ttl_days * 86400),
        cache=_cache(config, dynamodb),
        sqs=sqs,
        dead_letters=SqsDeadLetters(sqs, config.dead_letter_queue) if config.dead_letter_queue else None,
    )


def _cache(config: AppConfig, dynamodb: Any) -> Cache | None:
    if not config.phash_table:
        return None
    policy = CachePolicy(
        threshold=config.cache_threshold,
        ttl_seconds=config.cache_ttl_days * 86400,
        cross_owner_exact=config.cache_cross_owner,
    )
    return Cache(DynamoHashIndex(dynamodb, config.phash_table, policy.threshold), policy)
