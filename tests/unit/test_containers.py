"""What the Docker tooling decides without a daemon: endpoints for containers, the stand-ins' dnf, trust."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from atelier_dev.local import containers
from atelier_dev.local.images import env_file_text

STACK_ENV = {
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8333",
    "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:5000",
    "ATELIER_UPSCALE_QUEUE_URL": "http://127.0.0.1:5000/123456789012/atelier-upscale",
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_REGION": "us-east-1",
    "ATELIER_MODEL_PREFIX": "s3://atelier-photos-local/models",
    "ATELIER_NOTE": "listens on 127.0.0.1:8333 too",  # only URLs are rewritten
}


def test_in_container_points_every_loopback_url_at_the_gateway() -> None:
    env = containers.in_container(STACK_ENV, "172.30.0.1")
    assert env["AWS_ENDPOINT_URL_S3"] == "http://172.30.0.1:8333"
    assert env["ATELIER_UPSCALE_QUEUE_URL"] == "http://172.30.0.1:5000/123456789012/atelier-upscale"
    assert env["ATELIER_NOTE"] == STACK_ENV["ATELIER_NOTE"]
    assert env["AWS_ACCESS_KEY_ID"] == "key"  # docker run needs the stack's keys


def test_sam_env_vars_leave_keys_and_region_to_sam() -> None:
    values = containers.sam_env_vars({"SketchFunction": STACK_ENV}, "172.30.0.1")["SketchFunction"]
    assert values["AWS_ENDPOINT_URL_SQS"] == "http://172.30.0.1:5000"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} & set(values)


def test_env_file_is_one_key_a_line() -> None:
    assert env_file_text({"A": "1", "B": "x=y"}) == "A=1\nB=x=y\n"


def test_docker_host_is_the_environments_then_the_stacks_own_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    assert containers.docker_host() == "tcp://10.0.0.2:2375"
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setattr(containers, "SOCKET_DIR", Path("/nonexistent"))
    assert containers.docker_host() == containers.DEFAULT_DOCKER_HOST


@pytest.fixture
def dnf(tmp_path: Path) -> tuple[Path, Path]:
    """The stand-in's dnf with an apt-get that records what it is asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    apt.chmod(0o755)
    script = bin_dir / "dnf"
    script.write_text(containers.DNF)
    script.chmod(0o755)
    return script, calls


def run_dnf(dnf: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    script, _ = dnf
    env = {**os.environ, "PATH": f"{script.parent}:{os.environ['PATH']}"}
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, env=env)


def test_standin_dnf_installs_debian_packages_of_the_same_tools(dnf: tuple[Path, Path]) -> None:
    done = run_dnf(dnf, "install", "-y", "gcc", "make")
    assert done.returncode == 0, done.stderr
    update, install = dnf[1].read_text().splitlines()
    assert update == "update -qq"
    assert install.split()[-3:] == ["gcc", "libc6-dev", "make"]  # gcc with the C library's headers
    assert run_dnf(dnf, "clean", "all").returncode == 0


def test_standin_dnf_refuses_what_it_cannot_do(dnf: tuple[Path, Path]) -> None:
    done = run_dnf(dnf, "upgrade")
    assert done.returncode == 1 and "not 'upgrade'" in done.stderr


def test_certificates_splits_a_bundle(tmp_path: Path) -> None:
    one = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
    two = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"
    bundle = tmp_path / "bundle.crt"
    bundle.write_text(f"# a comment\n{one}\n{two}")
    assert containers._certificates(bundle) == [one, two]
    assert containers._certificates(tmp_path / "absent.crt") == []
