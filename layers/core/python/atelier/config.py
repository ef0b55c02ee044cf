"""The application's settings: the one module that reads the environment.

Everything else takes its settings as values: the entry points read them here, once per container, and
pass them on. Each reader takes an optional mapping (tests pass one; ``None`` means ``os.environ``), and a
missing or malformed setting raises ConfigError naming the variable, so a bad deployment fails fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from atelier.domain.limits import Limits

if TYPE_CHECKING:
    from atelier.domain.uploads import UploadSettings

Env = Mapping[str, str]


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


def _env(env: Env | None) -> Env:
    return os.environ if env is None else env


def _int(env: Env, name: str, default: int, *, low: int = 1, high: int | None = None) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bounds}, got {value}")
    return value


def _float(env: Env, name: str, default: float) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def read_limits(env: Env | None = None) -> Limits:
    """The input caps: ``ATELIER_MAX_BYTES``, ``_MAX_PIXELS``, ``_MAX_SIDE``, ``_WORKING_PIXELS``, ..."""
    env, d = _env(env), Limits()
    return Limits(
        max_bytes=_int(env, "ATELIER_MAX_BYTES", d.max_bytes),
        max_pixels=_int(env, "ATELIER_MAX_PIXELS", d.max_pixels),
        max_side=_int(env, "ATELIER_MAX_SIDE", d.max_side),
        working_pixels=_int(env, "ATELIER_WORKING_PIXELS", d.working_pixels),
        max_extra_inflate=_int(env, "ATELIER_MAX_EXTRA_INFLATE", d.max_extra_inflate),
        max_scans=_int(env, "ATELIER_MAX_SCANS", d.max_scans),
        decode_ms_per_mp=_int(env, "ATELIER_DECODE_MS_PER_MP", d.decode_ms_per_mp),
    )


def read_upload_settings(env: Env | None = None) -> UploadSettings:
    """How long a POST policy and a download URL last: ``ATELIER_UPLOAD_MINUTES``, ``_DOWNLOAD_MINUTES``."""
    from atelier.domain.uploads import UploadSettings  # here: the upload policy imports the style catalogue

    env, d = _env(env), UploadSettings()
    return UploadSettings(
        upload_minutes=_int(env, "ATELIER_UPLOAD_MINUTES", d.upload_minutes, high=10080),
        download_minutes=_int(env, "ATELIER_DOWNLOAD_MINUTES", d.download_minutes, high=10080),
    )


def model_cache_dir(env: Env | None = None) -> Path:
    """The local model cache: ``ATELIER_MODEL_DIR``, else ~/.cache/atelier/models."""
    raw = _env(env).get("ATELIER_MODEL_DIR", "")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "atelier" / "models"


def model_tmp_dir(env: Env | None = None) -> Path:
    """Where models fetched from S3 are kept for the container's life: ``ATELIER_MODEL_TMP``."""
    return Path(_env(env).get("ATELIER_MODEL_TMP", "") or "/tmp/atelier-models")


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
    s3_path_style: bool = False  # path-style S3 addressing (local servers), else the SDK's choice

    @classmethod
    def from_env(cls, env: Env | None = None, *, idempotency: bool = True) -> AppConfig:
        """Read ``ATELIER_*``; raise ConfigError naming every missing variable at once."""
        env = _env(env)
        required = ("ATELIER_BUCKET", "ATELIER_STATUS_TABLE") + (("ATELIER_IDEMPOTENCY_TABLE",) * idempotency)
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
        cross = env.get("ATELIER_CACHE_CROSS_OWNER", "false").lower()
        if cross not in ("true", "false"):
            raise ConfigError("ATELIER_CACHE_CROSS_OWNER must be true or false")
        return cls(
            bucket=env["ATELIER_BUCKET"],
            status_table=env["ATELIER_STATUS_TABLE"],
            idempotency_table=env.get("ATELIER_IDEMPOTENCY_TABLE", ""),
            limits=read_limits(env),
            status_ttl_days=_int(env, "ATELIER_STATUS_TTL_DAYS", 90),
            phash_table=env.get("ATELIER_PHASH_TABLE", ""),
            cache_threshold=_int(env, "ATELIER_CACHE_THRESHOLD", 6, low=0),
            cache_ttl_days=_int(env, "ATELIER_CACHE_TTL_DAYS", 30),
            cache_cross_owner=cross == "true",
            dead_letter_queue=env.get("ATELIER_DEAD_LETTER_QUEUE_URL", ""),
            s3_path_style=env.get("ATELIER_S3_PATH_STYLE") == "1",
        )


def read_function_prefix(env: Env | None = None) -> str:
    """``ATELIER_FUNCTION_PREFIX``: the dead-letter marker finds a style function's style by it."""
    prefix = _env(env).get("ATELIER_FUNCTION_PREFIX", "")
    if not prefix:
        raise ConfigError("set ATELIER_FUNCTION_PREFIX: the style functions are named <prefix><style>")
    return prefix


@dataclass(frozen=True)
class AnimeSettings:
    """The anime function's model, size and execution path, and where models come from."""

    default_model: str = "face_paint_512_v2"
    max_side: int = 1024
    provider: str = "auto"
    model_prefix: str = ""  # s3://bucket/prefix the models are fetched from when not installed
    model_pins: dict[str, str] = field(default_factory=dict)  # name -> SHA-256, over the manifest's

    @classmethod
    def from_env(cls, env: Env | None = None) -> AnimeSettings:
        """Read ``ATELIER_ANIME_MODEL``, ``_ANIME_MAX_SIDE``, ``_ANIME_PROVIDER``, ``_MODEL_PREFIX`` and
        ``_MODEL_SHA256``."""
        env, d = _env(env), cls()
        raw_pins = env.get("ATELIER_MODEL_SHA256", "") or "{}"
        try:
            pins = json.loads(raw_pins)
        except ValueError as exc:
            raise ConfigError(f"ATELIER_MODEL_SHA256 must be a JSON object, got {raw_pins!r}") from exc
        if not isinstance(pins, dict):
            raise ConfigError(f"ATELIER_MODEL_SHA256 must be a JSON object, got {raw_pins!r}")
        return cls(
            default_model=env.get("ATELIER_ANIME_MODEL", "") or d.default_model,
            max_side=_int(env, "ATELIER_ANIME_MAX_SIDE", d.max_side),
            provider=env.get("ATELIER_ANIME_PROVIDER", "") or d.provider,
            model_prefix=env.get("ATELIER_MODEL_PREFIX", ""),
            model_pins={str(k): str(v) for k, v in pins.items()},
        )


UPSCALE_PROVIDERS = ("auto", "tensorrt", "cuda", "cpu")  # atelier.inference.upscale.PROVIDERS


@dataclass(frozen=True)
class WorkerSettings:
    """The GPU worker's queue, its lease timings and its models."""

    queue_url: str
    model_template: str  # a path with {scale} in it (the models baked into the image)
    provider: str = "auto"  # auto (the GPU where ONNX Runtime has one), tensorrt, cuda or cpu
    wait_seconds: int = 20
    visibility: int = 300
    heartbeat: float = 60.0
    retry_delay: int = 30
    grace: int = 20

    @classmethod
    def from_env(cls, env: Env | None = None, *, queue_url: str | None = None) -> WorkerSettings:
        """Read ``ATELIER_UPSCALE_QUEUE_URL`` (or take ``queue_url``), ``ATELIER_UPSCALE_MODEL``,
        ``ATELIER_UPSCALE_PROVIDER`` and ``ATELIER_WORKER_*``."""
        env, d = _env(env), cls("", "{scale}")
        url = queue_url or env.get("ATELIER_UPSCALE_QUEUE_URL", "")
        if not url:
            raise ConfigError("set ATELIER_UPSCALE_QUEUE_URL (or pass --queue-url)")
        template = env.get("ATELIER_UPSCALE_MODEL", "")
        if "{scale}" not in template:
            raise ConfigError("ATELIER_UPSCALE_MODEL must be a model path containing {scale}")
        provider = env.get("ATELIER_UPSCALE_PROVIDER", "") or d.provider
        if provider not in UPSCALE_PROVIDERS:
            raise ConfigError(
                f"ATELIER_UPSCALE_PROVIDER={provider!r} is not one of {', '.join(UPSCALE_PROVIDERS)}"
            )
        return cls(
            queue_url=url,
            model_template=template,
            provider=provider,
            wait_seconds=_int(env, "ATELIER_WORKER_WAIT_SECONDS", d.wait_seconds, low=0, high=20),
            visibility=_int(env, "ATELIER_WORKER_VISIBILITY", d.visibility),
            heartbeat=_float(env, "ATELIER_WORKER_HEARTBEAT", d.heartbeat),
            retry_delay=_int(env, "ATELIER_WORKER_RETRY_DELAY", d.retry_delay, low=0),
            grace=_int(env, "ATELIER_WORKER_GRACE", d.grace, low=0),
        )

    def model_path(self, scale: int) -> Path:
        return Path(self.model_template.format(scale=scale))
