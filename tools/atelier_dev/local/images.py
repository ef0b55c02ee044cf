"""The two container images, built from their Dockerfiles and run against the local stack.

- ``anime`` (infra/anime-image): the anime function as a Lambda image. Run with no Lambda around it, its
  base's entrypoint serves it through the Runtime Interface Emulator on port 8080, which takes an
  invocation at ``/2015-03-31/functions/function/invocations``.
- ``worker`` (infra/gpu-worker): the upscale worker. With no GPU (or on the stand-in CUDA base, which has no
  CUDA) ONNX Runtime's session falls back to the CPU, and the worker says so and renders there.

Both are built from the repository root with the context ``.dockerignore`` allows. Where a base image is
absent and no registry gives it, :mod:`atelier_dev.local.containers` builds a stand-in under its name first;
builds then use the host's network (``--network host``), since this stack's daemon gives its bridge no
route out. A container reaches the stack through the bridge's gateway (``atelier local up --listen 0.0.0.0``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atelier.inference import models
from atelier_dev.local.cfn import find_template
from atelier_dev.local.containers import (
    CUDA_BASE,
    LAMBDA_BASE,
    bridge_gateway,
    docker,
    docker_host,
    ensure_base,
    in_container,
)
from atelier_dev.local.stack import LocalStack, StackError

ROOT = find_template().parent
# the models a worker image is built with for the local stack: the untrained dev x2, as `make run` uses
DEV_MODELS = ROOT / "build" / "models-dev"
DEV_SCALES = (2,)
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    base: str
    tag: str


IMAGES = {
    "anime": Image("anime", "infra/anime-image/Dockerfile", LAMBDA_BASE, "atelier-anime:local"),
    "worker": Image("worker", "infra/gpu-worker/Dockerfile", CUDA_BASE, "atelier-gpu-worker:local"),
}


def build(image: Image, log: Path, *, build_args: Mapping[str, str] | None = None, pull: bool = True) -> str:
    """``docker build`` the image from the repository root (its base first: see ``ensure_base``); returns
    what became of the base (present, pulled or built)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    base = ensure_base(image.base, log.parent, pull=pull)
    cmd = ["build", "--network", "host", "-f", image.dockerfile, "-t", image.tag]
    cmd += [arg for k, v in (build_args or {}).items() for arg in ("--build-arg", f"{k}={v}")]
    done = docker(*cmd, ".", cwd=ROOT, timeout=3600)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise StackError(f"docker build of {image.tag} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return base


def stage_worker_models(cache: Path, dest: Path = DEV_MODELS, scales: tuple[int, ...] = DEV_SCALES) -> Path:
    """The dev EDSR models of the cache under the names the worker image expects
    (``edsr_baseline_x{scale}.onnx`` and ``.fp16.onnx``), in a folder of the build context."""
    dest.mkdir(parents=True, exist_ok=True)
    for scale in scales:
        name = f"edsr_baseline_x{scale}-dev"
        for precision, suffix in (("fp32", ".onnx"), ("fp16", ".fp16.onnx")):
            shutil.copy2(
                models.installed_path(name, precision, root=cache), dest / f"edsr_baseline_x{scale}{suffix}"
            )
    return dest


def stage_anime_model(stack: LocalStack, cache: Path, name: str = "animeganv2-dev") -> dict[str, str]:
    """Put the cache's ``name`` under the stack's model prefix, as a deployment does; the SHA-256 pin
    (``ATELIER_MODEL_SHA256``) the function checks it against."""
    model = models.installed_path(name, root=cache)
    stack.s3.upload_file(str(model), stack.bucket, f"models/{name}/{model.name}")
    return {"ATELIER_MODEL_SHA256": json.dumps({name: models.sha256_file(model)})}


def container_env(
    stack: LocalStack, function: str | None = None, gateway: str | None = None
) -> dict[str, str]:
    """What a container on the bridge needs to use the stack: a function's variables, or (with no
    ``function``) the worker's, the stack's and its queue's; the stack's keys; every endpoint and queue URL
    through the bridge's gateway."""
    if function:
        env = stack.function_env(function)
    else:
        env = {**stack.env, "ATELIER_UPSCALE_QUEUE_URL": stack.queue_urls["UpscaleQueue"]}
    return in_container(env, gateway or bridge_gateway())


def env_file_text(env: Mapping[str, str]) -> str:
    """``docker run --env-file``: one ``KEY=VALUE`` a line."""
    return "".join(f"{k}={v}\n" for k, v in env.items())


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env_file_text(env), encoding="utf-8")
    return path


def run_foreground(image: Image, env_file: Path, *, port: int = 9000, args: Sequence[str] = ()) -> int:
    """``docker run`` the image in the foreground until it ends (or Ctrl-C): the anime image with its RIE
    on ``127.0.0.1:port``, the worker with ``args``."""
    cmd = ["docker", "run", "--rm", "--init", "--env-file", str(env_file)]
    if image.name == "anime":
        cmd += ["-p", f"127.0.0.1:{port}:8080"]
        print(f"invoke it: curl -d @event.json http://127.0.0.1:{port}{INVOKE_PATH}", flush=True)
    env = {**os.environ, "DOCKER_HOST": docker_host()}
    return subprocess.run([*cmd, image.tag, *args], env=env).returncode


class LambdaContainer:
    """A Lambda image run detached, its RIE on a loopback port: ``invoke`` as Lambda would."""

    def __init__(self, tag: str, env_file: Path) -> None:
        self.tag = tag
        self.env_file = env_file
        self.id = ""
        self.port = 0

    def __enter__(self) -> LambdaContainer:
        run = docker(
            "run", "-d", "--env-file", str(self.env_file), "-p", "127.0.0.1::8080", self.tag, timeout=120
        )
        if run.returncode != 0:
            raise StackError(f"docker run {self.tag} failed: {run.stderr}")
        self.id = run.stdout.strip()
        port = docker("port", self.id, "8080/tcp", timeout=30).stdout.split(":")[-1].strip()
        self.port = int(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise StackError(f"{self.tag} did not listen:\n{self.logs()}") from None
                time.sleep(0.2)

    def invoke(self, event: Any, timeout: float = 300) -> Any:
        """POST the event to the RIE; the function's result."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{INVOKE_PATH}", data=json.dumps(event).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read())

    def logs(self) -> str:
        done = docker("logs", self.id, timeout=60)
        return done.stdout + done.stderr

    def __exit__(self, *exc: object) -> None:
        docker("rm", "-f", self.id, timeout=60)


def run_worker(
    tag: str, env_file: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the worker image to its end (``--until-idle``, say) and return what it printed."""
    return docker("run", "--rm", "--env-file", str(env_file), tag, *args, timeout=timeout)
