"""Input caps, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MB = 1024 * 1024
MP = 1_000_000


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Limits:
    """Caps applied to every input before and while it is decoded."""

    max_bytes: int = 40 * MB
    max_pixels: int = 50 * MP
    max_side: int = 20_000
    working_pixels: int = 24 * MP

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Read ``ATELIER_MAX_BYTES``, ``_MAX_PIXELS``, ``_MAX_SIDE`` and ``_WORKING_PIXELS`` from ``env``."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            max_bytes=_env_int(env, "ATELIER_MAX_BYTES", d.max_bytes),
            max_pixels=_env_int(env, "ATELIER_MAX_PIXELS", d.max_pixels),
            max_side=_env_int(env, "ATELIER_MAX_SIDE", d.max_side),
            working_pixels=_env_int(env, "ATELIER_WORKING_PIXELS", d.working_pixels),
        )
