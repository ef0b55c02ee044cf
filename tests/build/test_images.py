"""Both container images, built from their Dockerfiles and run against the local stack, in Docker.

The anime function's image (infra/anime-image) answers invocations through the Runtime Interface Emulator
its base carries, and renders with its dev model fetched from the stack's bucket. The GPU worker's image
(infra/gpu-worker) runs `--until-idle` with no GPU: ONNX Runtime's CUDA provider cannot load, the session
falls back to the CPU, the worker says so and completes the upscale. Where the real base images are absent
and no registry gives them, stand-ins are built under their names first (atelier_dev.local.containers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import cv2
import numpy as np
import pytest

from atelier.adapters.aws.status import DynamoStatusStore
from atelier.domain import keys
from atelier_dev.local.containers import DockerDaemon, docker
from atelier_dev.local.dispatcher import object_created_event
from atelier_dev.local.images import (
    IMAGES,
    LambdaContainer,
    build,
    container_env,
    run_worker,
    stage_anime_model,
    stage_worker_models,
    write_env_file,
)
from atelier_dev.local.stack import LocalStack, start_stack
from atelier_dev.models.cli import main as models_main
from tests.events import EVENTS, PHOTO_OF

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ANIME, WORKER = IMAGES["anime"], IMAGES["worker"]


@pytest.fixture(scope="module")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("models")
    models_main(["--cache", str(cache), "build-dev", "--only", "animeganv2-dev", "edsr_baseline_x2-dev"])
    return cache


@pytest.fixture(scope="module")
def stack(docker_daemon: DockerDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # no dispatcher: the test hands each container its event, as Lambda and the queue would
    with start_stack(
        tmp_path_factory.mktemp("stack"), listen="0.0.0.0", stack_name="atelier-images"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def anime_image(docker_daemon: DockerDaemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    build(ANIME, tmp_path_factory.mktemp("build") / "anime.log")
    return ANIME.tag


@pytest.fixture(scope="module")
def worker_image(
    docker_daemon: DockerDaemon, models_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    staged = stage_worker_models(models_cache)
    build(
        WORKER,
        tmp_path_factory.mktemp("build") / "worker.log",
        build_args={"MODELS": str(staged.relative_to(ROOT))},
    )
    return WORKER.tag


def in_python(tag: str, code: str) -> str:
    done = docker("run", "--rm", "--entrypoint", "python3", tag, "-c", code, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_anime_image_carries_onnx_runtime_with_openvino(anime_image: str) -> None:
    providers = in_python(anime_image, "import onnxruntime; print(onnxruntime.get_available_providers())")
    assert "OpenVINOExecutionProvider" in providers and "CPUExecutionProvider" in providers


def test_anime_image_answers_through_the_rie_and_renders_into_the_stack(
    stack: LocalStack, anime_image: str, models_cache: Path, tmp_path: Path
) -> None:
    env = container_env(stack, "AnimeFunction") | stage_anime_model(stack, models_cache)
    event = json.loads((EVENTS / "anime.json").read_text())
    event["detail"]["bucket"]["name"] = stack.bucket
    key = unquote_plus(event["detail"]["object"]["key"])
    photo = (ROOT / "samples" / PHOTO_OF["anime.json"]).read_bytes()
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=photo)
    with LambdaContainer(anime_image, write_env_file(tmp_path / "anime.env", env)) as function:
        first = function.invoke(event)
        again = function.invoke(event)  # the same event: the idempotency record's answer
        logs = function.logs()
    assert (first["state"], first["model"], first["trained"]) == ("done", "animeganv2-dev", False), logs[
        -3000:
    ]
    assert again == first
    body = stack.s3.get_object(Bucket=stack.bucket, Key=first["output_key"])["Body"].read()
    art = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    source = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    assert art.shape == source.shape
    assert "INIT REPORT" in logs and logs.count("INVOKE RTDONE(status: success") == 2


def test_worker_image_runs_as_a_user_not_root(worker_image: str) -> None:
    user = docker("image", "inspect", "--format", "{{.Config.User}}", worker_image, timeout=30).stdout.strip()
    assert user == "10001"
    assert in_python(worker_image, "import os; print(os.getuid())") == "10001"


def test_worker_image_upscales_until_idle_on_the_cpu(
    stack: LocalStack, worker_image: str, tmp_path: Path
) -> None:
    small = cv2.resize(
        cv2.imread(str(ROOT / "samples" / "chelsea.jpg")), (120, 80), interpolation=cv2.INTER_AREA
    )
    key, png = "incoming/upscale/x2/small chelsea.png", cv2.imencode(".png", small)[1].tobytes()
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=png)["ETag"].strip('"')
    event = object_created_event(stack.bucket, key, size=len(png), etag=etag)
    stack.sqs.send_message(QueueUrl=stack.queue_urls["UpscaleQueue"], MessageBody=json.dumps(event))
    env = container_env(stack) | {"ATELIER_WORKER_WAIT_SECONDS": "1"}
    done = run_worker(worker_image, write_env_file(tmp_path / "worker.env", env), "--until-idle")
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs[-3000:]
    assert "the session got cpu" in logs and "1 done, 0 released, 0 failed" in logs, logs[-3000:]
    image_id = keys.drop_in_image_id(key, etag)
    (item,) = DynamoStatusStore(stack.dynamodb, stack.env["ATELIER_STATUS_TABLE"]).get_status(image_id)
    assert (item["style"], item["state"], item["factor"]) == ("upscale", "done", 2)
    body = stack.s3.get_object(Bucket=stack.bucket, Key=item["output_key"])["Body"].read()
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (160, 240, 3)
