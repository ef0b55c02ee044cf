"""atelier.config, the one reader of the environment: every setting comes from the mapping it is given."""

from __future__ import annotations

import pytest

from atelier.config import (
    AnimeSettings,
    AppConfig,
    ConfigError,
    WorkerSettings,
    read_function_prefix,
    read_upload_settings,
)
from atelier.domain.limits import Limits
from atelier.domain.uploads import UploadSettings

REQUIRED = {"ATELIER_BUCKET": "b", "ATELIER_STATUS_TABLE": "s", "ATELIER_IDEMPOTENCY_TABLE": "i"}
LIMIT_NAMES = ("ATELIER_MAX_BYTES", "ATELIER_MAX_PIXELS", "ATELIER_MAX_SIDE", "ATELIER_WORKING_PIXELS")


def test_limits_set_only_in_the_given_mapping_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LIMIT_NAMES:
        monkeypatch.delenv(name, raising=False)
    env = {
        **REQUIRED,
        "ATELIER_MAX_BYTES": "4096",
        "ATELIER_MAX_PIXELS": "2000000",
        "ATELIER_MAX_SIDE": "3000",
        "ATELIER_WORKING_PIXELS": "1000000",
    }
    assert AppConfig.from_env(env).limits == Limits(4096, 2_000_000, 3000, 1_000_000)


def test_limits_in_os_environ_do_not_leak_into_a_given_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_MAX_BYTES", "1234")
    assert AppConfig.from_env(dict(REQUIRED)).limits == Limits()
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    assert AppConfig.from_env().limits.max_bytes == 1234  # without a mapping, os.environ is the mapping


@pytest.mark.parametrize("bad", ["many", "0", "-5"])
def test_a_malformed_limit_in_the_mapping_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="ATELIER_MAX_SIDE"):
        AppConfig.from_env({**REQUIRED, "ATELIER_MAX_SIDE": bad})


def test_upload_settings_come_from_the_environment() -> None:
    assert read_upload_settings({}) == UploadSettings(10, 15)
    assert read_upload_settings({"ATELIER_UPLOAD_MINUTES": "3", "ATELIER_DOWNLOAD_MINUTES": "7"}) == (
        UploadSettings(3, 7)
    )
    for bad in ("0", "x", "99999"):
        with pytest.raises(ConfigError, match="ATELIER_UPLOAD_MINUTES"):
            read_upload_settings({"ATELIER_UPLOAD_MINUTES": bad})


def test_anime_settings_read_the_model_its_size_provider_and_pins() -> None:
    assert AnimeSettings.from_env({}) == AnimeSettings()
    env = {
        "ATELIER_ANIME_MODEL": "paprika",
        "ATELIER_ANIME_MAX_SIDE": "768",
        "ATELIER_ANIME_PROVIDER": "cpu",
        "ATELIER_MODEL_PREFIX": "s3://models/anime",
        "ATELIER_MODEL_SHA256": '{"paprika": "ab"}',
    }
    assert AnimeSettings.from_env(env) == AnimeSettings(
        "paprika", 768, "cpu", "s3://models/anime", {"paprika": "ab"}
    )
    for bad in ("[1]", "{"):
        with pytest.raises(ConfigError, match="ATELIER_MODEL_SHA256"):
            AnimeSettings.from_env({"ATELIER_MODEL_SHA256": bad})


def test_worker_settings_need_a_queue_and_a_model_path_per_scale() -> None:
    model = {"ATELIER_UPSCALE_MODEL": "/opt/models/x{scale}.onnx"}
    with pytest.raises(ConfigError, match="ATELIER_UPSCALE_QUEUE_URL"):
        WorkerSettings.from_env(model)
    with pytest.raises(ConfigError, match="ATELIER_UPSCALE_MODEL"):
        WorkerSettings.from_env({"ATELIER_UPSCALE_MODEL": "/opt/models/x4.onnx"}, queue_url="q")
    settings = WorkerSettings.from_env({**model, "ATELIER_WORKER_HEARTBEAT": "0.5"}, queue_url="q")
    assert (settings.queue_url, settings.heartbeat, settings.visibility) == ("q", 0.5, 300)
    assert str(settings.model_path(3)) == "/opt/models/x3.onnx"
    assert settings.provider == "auto"


def test_the_upscale_provider_can_be_forced_and_is_checked() -> None:
    env = {"ATELIER_UPSCALE_MODEL": "/opt/models/x{scale}.onnx", "ATELIER_UPSCALE_PROVIDER": "cpu"}
    assert WorkerSettings.from_env(env, queue_url="q").provider == "cpu"
    with pytest.raises(ConfigError, match="ATELIER_UPSCALE_PROVIDER"):
        WorkerSettings.from_env({**env, "ATELIER_UPSCALE_PROVIDER": "gpu"}, queue_url="q")


def test_the_function_prefix_is_required_by_the_dead_letter_marker() -> None:
    assert read_function_prefix({"ATELIER_FUNCTION_PREFIX": "atelier-"}) == "atelier-"
    with pytest.raises(ConfigError, match="ATELIER_FUNCTION_PREFIX"):
        read_function_prefix({})
