"""The anime function: AnimeGANv2 on ONNX Runtime, the model variant chosen per upload.

The variant is a sub-folder (``incoming/anime/<model>/…``) or the object's ``model`` metadata, else
``ATELIER_ANIME_MODEL``. A model comes from the model cache folder (``ATELIER_MODEL_DIR``: the function
package or a local cache, each file checked against its recorded SHA-256), else it is fetched once from
``ATELIER_MODEL_PREFIX`` (``s3://bucket/prefix``) into /tmp and checked against the SHA-256 pinned in the
manifest or given in ``ATELIER_MODEL_SHA256`` (a JSON object of name to hash). Sessions are built once per
container, on first use, on the execution path ``ATELIER_ANIME_PROVIDER`` names (``auto``, ``cpu`` or
``openvino-bf16``; see :mod:`atelier.inference.anime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from atelier.config import AnimeSettings, ConfigError
from atelier.domain import options
from atelier.domain.errors import JobFailed
from atelier.entrypoints import Handler, wiring
from atelier.entrypoints.lambda_style import style_handler
from atelier.inference import models
from atelier.inference.anime import PROVIDERS, AnimeModel, load_model, obtain_model_file
from atelier.pipeline import StyleJob

STYLE = "anime"


def anime_models() -> list[str]:
    """Names of the manifest's anime models."""
    return [name for name in models.names() if models.get(name).task == STYLE]


def variant(key: str, metadata: dict[str, str], default: str) -> str:
    """The model an upload asks for: ``incoming/anime/<model>/…``, else its metadata, else the default."""
    known = set(anime_models())
    parts = key.split("/")
    if len(parts) > 3 and parts[1] == STYLE and parts[2] in known:
        return parts[2]
    meta = {k.lower(): v for k, v in metadata.items()}
    # else the upload API's x-amz-meta-options: {"anime": {"model": …}}
    wanted = meta.get("model", "") or str(options.option_of(metadata, STYLE, "model") or "")
    return wanted if wanted in known else default


def model_file(name: str, settings: AnimeSettings, s3: Any = None) -> tuple[Path, str]:
    """The checked ONNX file of ``name`` and its SHA-256.

    A model that is not installed, has no pinned hash, or does not match it raises JobFailed: no retry
    changes that, a person must act. Other errors (a throttled or unreachable S3) propagate to be retried.
    """
    info = models.read_info(name)
    local = models.installed_path(name)
    recorded = ((info or {}).get("onnx_sha256") or {}).get("fp32")
    try:
        if recorded and local.exists():
            return obtain_model_file(name, sha256=recorded, package_dir=models.cache_dir()), recorded
        sha = settings.model_pins.get(name) or models.get(name).sha256
        if not sha:
            raise JobFailed(
                "model_unpinned",
                f"the anime model {name} has no SHA-256 to check it against: pin it in the AnimeModelHashes "
                "parameter (ATELIER_MODEL_SHA256) or the manifest, or choose another model",
            )
        prefix = settings.model_prefix
        if not prefix:
            raise JobFailed(
                "model_unavailable", f"the anime model {name} is not installed and no model prefix is set"
            )
        return obtain_model_file(name, sha256=sha, s3_uri=prefix, s3=s3), sha
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey", "NotFound", "403"):
            raise
        where = f"{settings.model_prefix.rstrip('/')}/{name}/model.fp32.onnx"
        raise JobFailed(
            "model_unavailable",
            f"the anime model {name} is not installed: put its ONNX file at {where} "
            f"(`atelier models fetch {name}` makes it), or choose another model",
        ) from None
    except ValueError as exc:  # the file's SHA-256 is not the pinned one
        raise JobFailed("model_mismatch", f"the anime model {name} failed its check: {exc}") from None


def anime_handler(adapters: wiring.Adapters | None = None, env: Mapping[str, str] | None = None) -> Handler:
    """Build the anime handler (models load lazily, once per container and variant)."""
    settings = AnimeSettings.from_env(env)
    default, max_side, provider = settings.default_model, settings.max_side, settings.provider
    if provider not in PROVIDERS:
        raise ConfigError(f"ATELIER_ANIME_PROVIDER={provider!r} is not one of {', '.join(PROVIDERS)}")
    if default not in anime_models():
        raise ConfigError(f"ATELIER_ANIME_MODEL={default!r} is not an anime model of the manifest")
    app = adapters or wiring.build()
    loaded: dict[str, tuple[AnimeModel, str]] = {}

    def resolver(key: str, metadata: dict[str, str]) -> StyleJob:
        name = variant(key, metadata, default)
        if name not in loaded:
            path, sha = model_file(name, settings, app.s3)
            loaded[name] = (load_model(path, max_side=max_side, provider=provider), sha)
        model, sha = loaded[name]
        # the model's own metadata says whether its weights are trained; else the manifest does
        trained = model.trained if model.trained is not None else models.get(name).trained
        return StyleJob(
            name=STYLE,
            fingerprint=f"anime:{name}:{sha[:12]}:{max_side}",
            render=lambda bgr: model.stylize(bgr, max_side),
            status_fields={"model": name, "trained": trained},
        )

    def version(key: str, metadata: dict[str, str]) -> str:  # without loading the model
        return f"anime:{variant(key, metadata, default)}:{max_side}"

    return style_handler(STYLE, app, resolver, version)
