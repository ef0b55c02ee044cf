"""`sam local invoke` and `sam local start-lambda` for every zip function, in Docker, against the local stack.

What `sam build` made (.aws-sam/build) runs in SAM's own container over `public.ecr.aws/lambda/python:3.12`:
the real image where it is present, else the Debian stand-in (atelier_dev.local.containers), built once and
kept in the daemon's data root. The stack listens on every address, so the containers reach it through the
Docker bridge's gateway; `--env-vars` carries its names and endpoints, which the template declares for it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3
import pytest
from botocore.config import Config

from atelier_dev.local.containers import (
    DockerDaemon,
    docker_host,
    ensure_lambda_base,
    sam_env_vars,
    write_json,
)
from atelier_dev.local.images import stage_anime_model
from atelier_dev.local.stack import LocalStack, start_stack
from atelier_dev.models.cli import main as models_main
from tests.events import EVENTS, PHOTO_OF

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / ".aws-sam" / "build" / "template.yaml"
SAM = ROOT / ".tools" / "sam" / "bin" / "sam"
STYLES = ("sketch", "pencil", "oil", "watercolor")


@pytest.fixture(scope="module")
def stack(docker_daemon: DockerDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    ensure_lambda_base(tmp_path_factory.mktemp("standin"))
    # a stack name of its own: moto's in-process backends are shared by every stack of this process
    # (tests/e2e says more)
    stack_dir = tmp_path_factory.mktemp("stack")
    with start_stack(stack_dir, listen="0.0.0.0", stack_name="atelier-sam-local") as running:
        yield running


@pytest.fixture(scope="module")
def env_vars(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """--env-vars: every function's variables on the stack, the dev anime model pinned and in the bucket."""
    assert stack.template is not None
    cache = tmp_path_factory.mktemp("models")
    models_main(["--cache", str(cache), "build-dev", "--only", "animeganv2-dev"])
    values = sam_env_vars(
        {fn.logical_id: stack.function_env(fn.logical_id) for fn in stack.template.functions()}
    )
    values["AnimeFunction"].update(stage_anime_model(stack, cache))
    return write_json(tmp_path_factory.mktemp("sam") / "env.json", values)


def sam_env(stack: LocalStack) -> dict[str, str]:
    """SAM's own environment: the daemon, and the stack's keys, which it hands the function."""
    keys = {k: stack.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return {
        **os.environ,
        **keys,
        "AWS_DEFAULT_REGION": "us-east-1",
        "DOCKER_HOST": docker_host(),
        "SAM_CLI_TELEMETRY": "0",
    }


def s3_event(stack: LocalStack, name: str, photo: str, key: str | None = None) -> dict[str, Any]:
    """events/<name> pointed at the stack's bucket, its sample photo uploaded to its key (or ``key``)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    event["detail"]["bucket"]["name"] = stack.bucket
    if key is not None:
        event["detail"]["object"]["key"] = quote_plus(key, safe="/")
    key = unquote_plus(event["detail"]["object"]["key"])
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=(ROOT / "samples" / photo).read_bytes())
    return event


def invoke(stack: LocalStack, env_vars: Path, function: str, event: dict[str, Any], tmp_path: Path) -> Any:
    path = write_json(tmp_path / f"{function}.json", event)
    cmd = [str(SAM), "local", "invoke", function, "-t", str(BUILT), "-e", str(path)]
    cmd += ["--env-vars", str(env_vars), "--skip-pull-image"]
    done = subprocess.run(cmd, env=sam_env(stack), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("style", STYLES)
def test_sam_local_invoke_renders_each_style_into_the_stack(
    stack: LocalStack, env_vars: Path, style: str, tmp_path: Path
) -> None:
    event = s3_event(stack, f"{style}.json", PHOTO_OF[f"{style}.json"])
    result = invoke(stack, env_vars, f"{style.title()}Function", event, tmp_path)
    assert (result["state"], result["style"]) == ("done", style)
    assert stack.s3.head_object(Bucket=stack.bucket, Key=result["output_key"])["ContentLength"] > 1000


def test_sam_local_invoke_renders_anime_with_the_model_it_fetches_from_the_bucket(
    stack: LocalStack, env_vars: Path, tmp_path: Path
) -> None:
    result = invoke(stack, env_vars, "AnimeFunction", s3_event(stack, "anime.json", "chelsea.jpg"), tmp_path)
    assert (result["state"], result["model"]) == ("done", "animeganv2-dev")


def test_sam_local_invoke_answers_the_api_event(stack: LocalStack, env_vars: Path, tmp_path: Path) -> None:
    response = invoke(stack, env_vars, "ApiFunction", json.loads((EVENTS / "api.json").read_text()), tmp_path)
    assert response["statusCode"] == 200
    assert "sketch" in [s["name"] for s in json.loads(response["body"])["styles"]]


def test_sam_local_invoke_marks_a_job_failed_from_the_dead_letter_record(
    stack: LocalStack, env_vars: Path, tmp_path: Path
) -> None:
    assert stack.template is not None
    record = json.loads((EVENTS / "deadletter.json").read_text())
    record["requestPayload"] = s3_event(
        stack, "sketch.json", PHOTO_OF["sketch.json"], "incoming/sketch/given up.jpg"
    )
    record["requestContext"]["functionArn"] = stack.template.arn_of("SketchFunction") + ":$LATEST"
    result = invoke(stack, env_vars, "DeadLetterFunction", record, tmp_path)
    assert (result["state"], result["style"], result["reason"]) == ("failed", "sketch", "timed_out")


def test_sam_local_start_lambda_serves_invokes_warm(stack: LocalStack, env_vars: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [str(SAM), "local", "start-lambda", "-t", str(BUILT), "-p", str(port), "--env-vars", str(env_vars)]
    cmd += ["--skip-pull-image", "--warm-containers", "LAZY"]
    log = (stack.data_dir / "start-lambda.log").open("w")
    server = subprocess.Popen(cmd, env=sam_env(stack), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(read_timeout=300, retries={"max_attempts": 0}),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                listening = time.monotonic() < deadline and server.poll() is None
                assert listening, (stack.data_dir / "start-lambda.log").read_text()[-3000:]
                time.sleep(0.5)
        results = []
        event = s3_event(stack, "sketch.json", PHOTO_OF["sketch.json"], "incoming/sketch/served.jpg")
        for _ in range(2):  # the first starts the container and renders; the second, warm, replays it
            started = time.monotonic()
            answer = client.invoke(FunctionName="SketchFunction", Payload=json.dumps(event).encode())
            results.append((json.loads(answer["Payload"].read()), time.monotonic() - started))
        assert [r["state"] for r, _ in results] == ["done", "done"]
        assert results[1][1] < results[0][1]
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
