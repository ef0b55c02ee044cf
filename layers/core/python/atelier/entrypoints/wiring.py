"""The one place that builds AWS clients and plugs the adapters into the core.

Each entry point's factory (its composition root) calls :func:`build` once per container and takes every
client and adapter it uses from the result. Endpoints come from the standard ``AWS_ENDPOINT_URL*``
variables, read by botocore itself, so the same code runs against real AWS, LocalStack, or the local stack
of :mod:`atelier_dev.local`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
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
CLIENT_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=20)


def client_config(config: AppConfig, **extra: Any) -> Config:
    """The project's retry and timeout settings, with the configured S3 addressing style."""
    return CLIENT_CONFIG.merge(
        Config(s3={"addressing_style": "path" if config.s3_path_style else "auto"}, **extra)
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
    _session: Any = field(default=None, repr=False)

    @cached_property
    def presigner(self) -> Any:
        """An S3 client like ``s3`` (same region and endpoint) that signs with SigV4, built on first use.

        SigV4 is what every region accepts and what signs ``response-content-disposition`` correctly.
        """
        config = client_config(self.config, signature_version="s3v4")
        session = self._session or boto3.session.Session()
        return session.client("s3", region_name=self.s3.meta.region_name, config=config)


def build(config: AppConfig | None = None) -> Adapters:
    """Build clients and adapters from the configuration (by default, the environment's)."""
    config = config or AppConfig.from_env()
    session = boto3.session.Session()
    s3 = session.client("s3", config=client_config(config))
    dynamodb = session.client("dynamodb", config=client_config(config))
    sqs = session.client("sqs", config=client_config(config))
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
        _session=session,
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
