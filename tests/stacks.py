"""Local stacks for the integration tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from atelier_dev.local.stack import LocalStack


def start_dev_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, moto_mode: str = "thread"
) -> LocalStack:
    """A started :class:`LocalStack` whose anime function has the dev model (built, not downloaded)."""
    models = tmp_path_factory.mktemp("models")
    build_dev = [sys.executable, "-m", "atelier_dev.models.cli", "--cache", str(models), "build-dev"]
    subprocess.run([*build_dev, "--only", "animeganv2-dev"], check=True, capture_output=True, timeout=300)
    # the untrained dev generator stands in for the template's default AnimeGANv2 model
    parameters = {"AnimeModel": "animeganv2-dev"}
    stack = LocalStack(tmp_path_factory.mktemp(name), parameters=parameters, moto_mode=moto_mode)
    stack.start()
    stack.env["ATELIER_MODEL_DIR"] = str(models)
    return stack
