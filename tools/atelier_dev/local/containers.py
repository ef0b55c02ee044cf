"""Docker for ``sam local``: a daemon of the stack's own, the Lambda base image where the real one is absent,
and the environment that points a function in a container at the local stack.

On a laptop with Docker, SAM pulls ``public.ecr.aws/lambda/python:3.12`` and none of this builds anything.
Where no image registry can be reached, :func:`ensure_lambda_base` builds a stand-in under that very name,
from Debian packages (``debootstrap``), this machine's Python 3.12 and PyPI (``awslambdaric``, boto3): test
scaffolding with the real image's layout and environment, never what is deployed. SAM then builds its own
image over it (``--skip-pull-image``), adding the Runtime Interface Emulator it carries.

A container reaches the host through the Docker bridge's gateway, not 127.0.0.1, so the stack must listen
there too (``atelier local up --listen 0.0.0.0``); :func:`sam_env_vars` rewrites its endpoints to the gateway.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atelier_dev.local.stack import LOOPBACK, StackError, log_tail, spawn, terminate_pid

SOCKET_DIR = Path("/run/atelier-docker")
DATA_ROOT = Path("/var/lib/atelier-docker")  # images live on between runs: the stand-in is built once
BRIDGE_IP = "172.30.0.1"
DOCKER_HOST = f"unix://{SOCKET_DIR / 'docker.sock'}"
LAMBDA_BASE = "public.ecr.aws/lambda/python:3.12"
LAMBDA_BASE_TAGS = (LAMBDA_BASE, f"{LAMBDA_BASE}-x86_64")
STANDIN_CACHE = Path("/var/cache/atelier-standin")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# what the interpreter's own extension modules link against, beyond a minimal Debian
STANDIN_PACKAGES = ("ca-certificates", "libncursesw6", "libsqlite3-0", "libreadline8", "libnsl2", "libtirpc3")
# the environment of the real image, which the runtime and SAM rely on
LAMBDA_ENV = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib"
    ":/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}
BOOTSTRAP = """#!/bin/sh
# The Python 3.12 runtime's bootstrap: awslambdaric runs the handler _HANDLER names (or the first argument).
LAYERS=/opt/python/lib/python3.12/site-packages:/opt/python
export PYTHONPATH="/var/runtime${PYTHONPATH:+:$PYTHONPATH}:$LAYERS"
exec /var/lang/bin/python3.12 -m awslambdaric "${_HANDLER:-$1}"
"""
ENTRYPOINT = """#!/bin/sh
# As the real image's: outside Lambda (no AWS_LAMBDA_RUNTIME_API) the Runtime Interface Emulator serves it.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap "$_HANDLER"
fi
exec /var/runtime/bootstrap "$_HANDLER"
"""


def docker(*args: str, host: str = DOCKER_HOST, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the docker client against ``host``."""
    return subprocess.run(
        ["docker", *args], env={**os.environ, "DOCKER_HOST": host}, text=True, capture_output=True, **kwargs
    )


def daemon_answers(host: str = DOCKER_HOST) -> bool:
    return shutil.which("docker") is not None and docker("version", host=host, timeout=20).returncode == 0


class DockerDaemon:
    """dockerd on overlay2 with a bridge (SAM publishes a port to each container and POSTs to it), its
    socket, state and images kept apart from any other daemon; started only when none answers there."""

    def __init__(self, log_dir: Path) -> None:
        self.log_path = log_dir / "dockerd.log"
        self.pid: int | None = None

    def start(self, timeout: float = 60.0) -> DockerDaemon:
        if daemon_answers():
            return self
        dockerd = shutil.which("dockerd")
        if dockerd is None or os.geteuid() != 0:
            raise StackError(
                "sam local needs Docker: install Debian's docker.io (`make setup` does, as root) and run as "
                "root, or point DOCKER_HOST at a daemon"
            )
        SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        cmd = [
            dockerd,
            "--storage-driver=overlay2",
            "--iptables=false",
            "--ip-masq=false",
            f"--bip={BRIDGE_IP}/24",
            f"--data-root={DATA_ROOT}",
            f"--exec-root={SOCKET_DIR / 'exec'}",
            f"--pidfile={SOCKET_DIR / 'docker.pid'}",
            f"--host={DOCKER_HOST}",
        ]
        proc = spawn(cmd, self.log_path, cwd=SOCKET_DIR, detached=True)
        self.pid = proc.pid
        deadline = time.monotonic() + timeout
        while not daemon_answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StackError(f"dockerd did not start:\n{log_tail(self.log_path)}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Stop the daemon if this object started it (its images stay in DATA_ROOT)."""
        if self.pid is not None:
            terminate_pid(self.pid, timeout=30)
            self.pid = None


def image_present(tag: str) -> bool:
    return docker("image", "inspect", tag, timeout=30).returncode == 0


def python312_prefix() -> Path:
    """This machine's Python 3.12 (``ATELIER_PYTHON312`` names one), for the stand-in's /var/lang."""
    named = os.environ.get("ATELIER_PYTHON312")
    candidates = [named] if named else []
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True
    )
    candidates += [p for p in (shutil.which("python3.12"),) if p]
    for candidate in candidates:
        done = subprocess.run(
            [candidate, "-c", "import sys; print(sys.base_prefix, sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0 and done.stdout.split()[-1] == "True":
            return Path(done.stdout.split()[0])
    raise StackError("no Python 3.12 here for the Lambda stand-in image: set ATELIER_PYTHON312")


def ensure_lambda_base(log_dir: Path) -> str:
    """``public.ecr.aws/lambda/python:3.12``: the real image when present, else the stand-in, built once."""
    if all(image_present(tag) for tag in LAMBDA_BASE_TAGS):
        return "present"
    rootfs = STANDIN_CACHE / "rootfs"
    if not (rootfs / "var" / "lang" / "bin" / "python3.12").exists():
        _build_rootfs(rootfs, log_dir)
    archive = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    changes = [arg for k, v in LAMBDA_ENV.items() for arg in ("--change", f"ENV {k}={v}")]
    changes += ["--change", "WORKDIR /var/task", "--change", 'ENTRYPOINT ["/lambda-entrypoint.sh"]']
    imported = subprocess.run(
        ["docker", "import", *changes, "-", LAMBDA_BASE],
        stdin=archive.stdout,
        env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
        capture_output=True,
        text=True,
    )
    archive.wait()
    if imported.returncode != 0:
        raise StackError(f"docker import failed: {imported.stderr}")
    for tag in LAMBDA_BASE_TAGS[1:]:
        docker("tag", LAMBDA_BASE, tag, timeout=30, check=True)
    return "built"


def _run_logged(cmd: list[str], log: Path, **kwargs: Any) -> None:
    with log.open("a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if done.returncode != 0:
        raise StackError(f"{cmd[0]} failed ({done.returncode}):\n{log_tail(log)}")


def _build_rootfs(rootfs: Path, log_dir: Path) -> None:
    """Debian bookworm (minbase), this machine's Python 3.12 as /var/lang, awslambdaric and boto3 as the
    runtime, the RIE SAM's wheel carries, and the real image's bootstrap and entrypoint."""
    log = log_dir / "standin.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    STANDIN_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="rootfs-", dir=STANDIN_CACHE))
    _run_logged(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(STANDIN_PACKAGES)}",
            "bookworm",
            str(staging),
            DEBIAN_MIRROR,
        ],
        log,
    )
    prefix = python312_prefix()
    lang = staging / "var" / "lang"
    (lang / "bin").mkdir(parents=True)
    shutil.copy2(prefix / "bin" / "python3.12", lang / "bin" / "python3.12")
    skip = shutil.ignore_patterns("test", "site-packages", "__pycache__", "idlelib", "tkinter", "ensurepip")
    shutil.copytree(prefix / "lib", lang / "lib", ignore=skip, symlinks=True)
    (lang / "lib" / "python3.12" / "site-packages").mkdir(exist_ok=True)
    _run_logged(["patchelf", "--set-rpath", "/var/lang/lib", str(lang / "bin" / "python3.12")], log)
    for name in ("python3", "python"):
        (lang / "bin" / name).symlink_to("python3.12")
    runtime = staging / "var" / "runtime"
    _run_logged(
        [
            str(prefix / "bin" / "python3.12"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(runtime),
            "--only-binary=:all:",
            "awslambdaric",
            "boto3==1.40.4",
        ],
        log,
    )
    (runtime / "bootstrap").write_text(BOOTSTRAP)
    (staging / "lambda-entrypoint.sh").write_text(ENTRYPOINT)
    for script in (runtime / "bootstrap", staging / "lambda-entrypoint.sh"):
        script.chmod(0o755)
    rie = _sam_rie()
    (staging / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(rie, staging / "usr" / "local" / "bin" / "aws-lambda-rie")
    (staging / "var" / "task").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(rootfs)


def _sam_rie() -> Path:
    """The Runtime Interface Emulator inside SAM CLI's wheel (samcli/local/rapid/)."""
    sam = shutil.which("sam") or str(Path(".tools/sam/bin/sam").resolve())
    python = Path(sam).resolve().parent / "python"
    done = subprocess.run(
        [str(python), "-c", "import samcli, os; print(os.path.dirname(samcli.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    )
    rie = Path(done.stdout.strip()) / "local" / "rapid" / "aws-lambda-rie-x86_64"
    if not rie.is_file():
        raise StackError(f"SAM CLI's Runtime Interface Emulator is not at {rie}")
    return rie


def sam_env_vars(function_envs: Mapping[str, Mapping[str, str]], gateway: str = BRIDGE_IP) -> dict[str, Any]:
    """``sam local --env-vars``: each function's variables on the local stack, endpoints through ``gateway``.

    SAM passes only the variables the template declares; template.yaml declares the three
    ``AWS_ENDPOINT_URL_*`` as ``AWS::NoValue`` (so nothing of them is deployed) for this override to land.
    The keys are SAM's own: it gives the function the credentials of its own environment.
    """
    out: dict[str, Any] = {}
    for function, env in function_envs.items():
        values = {
            k: v for k, v in env.items() if not k.startswith(("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_REGION"))
        }
        for key, value in env.items():
            if key.startswith("AWS_ENDPOINT_URL"):
                values[key] = value.replace(LOOPBACK, gateway)
        out[function] = values
    return out


def bridge_gateway() -> str:
    """The host's address on the Docker bridge of the daemon ``DOCKER_HOST`` names (or this stack's own)."""
    host = os.environ.get("DOCKER_HOST", DOCKER_HOST)
    done = docker(
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        host=host,
        timeout=30,
    )
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else BRIDGE_IP


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


__all__ = [
    "BRIDGE_IP",
    "DOCKER_HOST",
    "LAMBDA_BASE",
    "DockerDaemon",
    "bridge_gateway",
    "daemon_answers",
    "docker",
    "ensure_lambda_base",
    "image_present",
    "sam_env_vars",
    "write_json",
]
