"""AppConfig.from_env: every setting, the input limits included, comes from the mapping it is given."""

from __future__ import annotations

import pytest

from atelier.config import AppConfig, ConfigError
from atelier.domain.limits import Limits

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
