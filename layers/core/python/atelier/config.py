"""The application's settings, read once from the environment; a missing resource name fails fast."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from atelier.limits import Limits


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, idempotency: bool = True) -> AppConfig:
        """Read ``ATELIER_*``; raise ConfigError naming every missing variable at once."""
        env = os.environ if env is None else env
        required = ("ATELIER_BUCKET", "ATELIER_STATUS_TABLE") + (("ATELIER_IDEMPOTENCY_TABLE",) * idempotency)
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
        try:
            ttl = int(env.get("ATELIER_STATUS_TTL_DAYS", "90"))
        except ValueError as exc:
            raise ConfigError("ATELIER_STATUS_TTL_DAYS must be an integer") from exc
        return cls(
            bucket=env["ATELIER_BUCKET"],
            status_table=env["ATELIER_STATUS_TABLE"],
            idempotency_table=env.get("ATELIER_IDEMPOTENCY_TABLE", ""),
            limits=Limits.from_env(),
            status_ttl_days=ttl,
        )
