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
    # Work a valid file may ask of the decoder. A PNG's image data may inflate to this much more than its
    # rows need (libpng reads the excess with a warning; a 2.7 MB IDAT can inflate to 2.7 GB).
    max_extra_inflate: int = 8 * MB
    # A progressive JPEG re-reads its coefficients once per scan; encoders write 10 to 20.
    max_scans: int = 100
    # Reading the structure and decoding, per megapixel (1 MP at least); decoders take 10 to 40 ms/MP here.
    decode_ms_per_mp: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Read the ``ATELIER_`` caps (MAX_BYTES, MAX_PIXELS, MAX_SIDE, WORKING_PIXELS, ...) from ``env``."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            max_bytes=_env_int(env, "ATELIER_MAX_BYTES", d.max_bytes),
            max_pixels=_env_int(env, "ATELIER_MAX_PIXELS", d.max_pixels),
            max_side=_env_int(env, "ATELIER_MAX_SIDE", d.max_side),
            working_pixels=_env_int(env, "ATELIER_WORKING_PIXELS", d.working_pixels),
            max_extra_inflate=_env_int(env, "ATELIER_MAX_EXTRA_INFLATE", d.max_extra_inflate),
            max_scans=_env_int(env, "ATELIER_MAX_SCANS", d.max_scans),
            decode_ms_per_mp=_env_int(env, "ATELIER_DECODE_MS_PER_MP", d.decode_ms_per_mp),
        )
