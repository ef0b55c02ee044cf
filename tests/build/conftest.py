"""The build tier's Docker daemon: started once for the modules that need it, stopped at the session's end."""

from collections.abc import Iterator

import pytest

from atelier_dev.local.containers import DockerDaemon


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    """Docker: the one ``DOCKER_HOST`` names, else this stack's own daemon (started here as root)."""
    daemon = DockerDaemon(tmp_path_factory.mktemp("docker")).start()
    try:
        yield daemon
    finally:
        daemon.stop()
