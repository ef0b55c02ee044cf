"""The application's settings, read once from the environment; a missing resource name fails fast."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from atelier.domain.limits import Limits


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class AppConfig:
    """Resource names and knobs of a deployed (or locally running) Atelier."""

    bucket: str
    status_table: str
    idempotency_table: str  # the Lambda handlers' Powertools Idempotency table; the GPU worker has none
    limits: Limits
    status_ttl_days: int = 90
    phash_table: str = ""  # empty: no near-duplicate cache
    cache_threshold: int = 6
    cache_ttl_days: int = 30
    cache_cross_owner: bool = False
    dead_letter_queue: str = ""  # the URL where failed jobs' records go (empty: none)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, idempotency: bool = True) -> AppConfig:
        """Read ``ATELIER_*``; raise ConfigError naming every missing variable at once."""
        env = os.environ if env is None else env
        required = ("ATELIER_BUCKET", "ATELIER_STATUS_TABLE") + (("ATELIER_IDEMPOTENCY_TABLE",) * idempotency)
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
        ints = {}
        for name, default in (
            ("ATELIER_STATUS_TTL_DAYS", 90),
            ("ATELIER_CACHE_THRESHOLD", 6),
            ("ATELIER_CACHE_TTL_DAYS", 30),
        ):
            try:
                ints[name] = int(env.get(name, str(default)))
            except ValueError as exc:
                raise ConfigError(f"{name} must be an integer") from exc
        try:
            limits = Limits.from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        cross = env.get("ATELIER_CACHE_CROSS_OWNER", "false").lower()
        if cross not in ("true", "false"):
            raise ConfigError("ATELIER_CACHE_CROSS_OWNER must be true or false")
        return cls(
            bucket=env["ATELIER_BUCKET"],
            status_table=env["ATELIER_STATUS_TABLE"],
            idempotency_table=env.get("ATELIER_IDEMPOTENCY_TABLE", ""),
            limits=limits,
            status_ttl_days=ints["ATELIER_STATUS_TTL_DAYS"],
            phash_table=env.get("ATELIER_PHASH_TABLE", ""),
            cache_threshold=ints["ATELIER_CACHE_THRESHOLD"],
            cache_ttl_days=ints["ATELIER_CACHE_TTL_DAYS"],
            cache_cross_owner=cross == "true",
            dead_letter_queue=env.get("ATELIER_DEAD_LETTER_QUEUE_URL", ""),
        )
