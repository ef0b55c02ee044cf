"""Shared fixtures for integration tests: one local stack (real servers on loopback) per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from atelier_dev.local.api_server import serve_api
from atelier_dev.local.dispatcher import Dispatcher
from atelier_dev.local.stack import LocalStack
from tests.stacks import start_dev_stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A running :class:`LocalStack` with its dispatcher polling; everything stops at the end of the session.

    It offers ``.s3``, ``.dynamodb``, ``.sqs`` (boto3 clients), ``.names`` (logical id -> local name),
    ``.queue_urls``, ``.bucket``, ``.env`` (the variables the application reads) and ``.dispatcher``.
    """
    stack = start_dev_stack(tmp_path_factory, "local-stack")
    try:
        # The environment is applied per test (see _local_stack_env), not for the whole session, so that
        # tests run later in the same session (unit tests under moto's mock) never see these endpoints.
        stack.start_dispatcher(apply_env=False)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _local_stack_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Set the stack's variables in os.environ for each test that uses the stack; wait for quiet after."""
    if "local_stack" not in request.fixturenames:
        yield
        return
    stack: LocalStack = request.getfixturevalue("local_stack")
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    yield
    stack.dispatcher.wait_idle(timeout=60)


@pytest.fixture
def dispatcher(local_stack: LocalStack) -> Iterator[Dispatcher]:
    """The session's dispatcher with empty records; overrides set by the test are removed afterwards."""
    dispatcher = local_stack.dispatcher
    dispatcher.wait_idle(timeout=60)
    dispatcher.clear_records()
    yield dispatcher
    dispatcher.wait_idle(timeout=60)
    dispatcher.clear_overrides()
    dispatcher.clear_records()


@pytest.fixture
def unique_id() -> str:
    """A fresh id to keep each test's keys apart in the shared bucket."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def api_url(local_stack: LocalStack) -> Iterator[str]:
    """The local API server (``/api``) of the session's stack, one per test module."""
    url, stop = serve_api(local_stack)
    try:
        yield url + "/api"
    finally:
        stop()
