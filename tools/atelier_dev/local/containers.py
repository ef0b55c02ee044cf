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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atelier_dev.local.stack import LOOPBACK, StackError, log_tail, spawn, terminate_pid

SOCKET_DIR = Path("/run/atelier-docker")
DATA_ROOT = Path("/var/lib/atelier-docker")  # images live on between runs: the stand-in is built once
BRIDGE_IP = "172.30.0.1"
DOCKER_HOST = f"unix://{SOCKET_DIR / 'docker.sock'}"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LAMBDA_BASE = "public.ecr.aws/lambda/python:3.12"
CUDA_BASE = "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
STANDIN_CACHE = Path("/var/cache/atelier-standin")
# A stand-in carries this label; one of another version is rebuilt, an image without it is the real one.
STANDIN_LABEL = "org.atelier.standin"
STANDIN_VERSION = "2"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# what the interpreter's own extension modules link against, beyond a minimal Debian
STANDIN_PACKAGES = ("ca-certificates", "libncursesw6", "libsqlite3-0", "libreadline8", "libnsl2", "libtirpc3")
# the environment of the real images, which the runtime, SAM and the Dockerfiles rely on
LAMBDA_ENV = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib"
    ":/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}
CUDA_ENV = {
    "PATH": "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    ":/sbin:/bin",
    "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "CUDA_VERSION": "12.6.3",
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
PIP = """#!/var/lang/bin/python3.12
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""
# The real image's package manager is dnf (microdnf, Amazon Linux 2023); the Dockerfiles call it by that name.
DNF = """#!/bin/sh
# The stand-in's dnf: `dnf install -y NAME...` installs Debian's packages of those tools with apt (gcc brings
# the C library's headers, as Amazon Linux's does); `dnf clean all` empties apt's caches. Nothing else.
set -e
export LC_ALL=C.UTF-8
command="$1"
[ $# -gt 0 ] && shift
case "$command" in
  install)
    packages=""
    for arg in "$@"; do
      case "$arg" in
        -*) ;;
        gcc) packages="$packages gcc libc6-dev" ;;
        gcc-c++) packages="$packages g++" ;;
        *) packages="$packages $arg" ;;
      esac
    done
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
    ;;
  clean)
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    ;;
  *)
    echo "dnf (the Debian stand-in's): only install and clean are known, not '$command'" 1>&2
    exit 1
    ;;
esac
"""


def docker_host() -> str:
    """The daemon: ``DOCKER_HOST``, else this stack's own where its socket is, else Docker's default."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    return DOCKER_HOST if (SOCKET_DIR / "docker.sock").exists() else DEFAULT_DOCKER_HOST


def docker(*args: str, host: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the docker client against ``host`` (default: :func:`docker_host`)."""
    env = {**os.environ, "DOCKER_HOST": host or docker_host()}
    return subprocess.run(["docker", *args], env=env, text=True, capture_output=True, **kwargs)


def daemon_answers(host: str | None = None) -> bool:
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
        if os.environ.get("DOCKER_HOST"):
            raise StackError(f"no Docker daemon answers at DOCKER_HOST={os.environ['DOCKER_HOST']}")
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
        while not daemon_answers(DOCKER_HOST):
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


def standin_version(tag: str) -> str | None:
    """The stand-in version ``tag`` carries: ``""`` for an image that is no stand-in, None if absent."""
    label = f'{{{{index .Config.Labels "{STANDIN_LABEL}"}}}}'
    done = docker("image", "inspect", "--format", label, tag, timeout=30)
    if done.returncode != 0:
        return None
    version = done.stdout.strip()
    if version in ("", "<no value>"):  # the real image, or a stand-in from before the label (imported)
        history = docker("history", "--no-trunc", "--format", "{{.Comment}}", tag, timeout=30).stdout
        return "1" if history.split("\n")[0].strip() == "Imported from -" else ""
    return version


def ensure_base(name: str, log_dir: Path, *, pull: bool = True) -> str:
    """The base image ``name`` (:data:`LAMBDA_BASE` or :data:`CUDA_BASE`, with the tags SAM uses too):
    ``present`` when the real image or this version's stand-in is there, ``pulled`` when a registry gave the
    real one, ``built`` when the stand-in was built because none could."""
    standin = _STANDINS[name]
    versions = [standin_version(tag) for tag in standin.tags]
    if all(v is not None and v in ("", STANDIN_VERSION) for v in versions):
        return "present"
    if pull and all(docker("pull", tag, timeout=1800).returncode == 0 for tag in standin.tags):
        return "pulled"
    if not (standin.rootfs / ".complete").exists():
        standin.build(standin.rootfs, log_dir)
    _import(standin)
    return "built"


def ensure_lambda_base(log_dir: Path, *, pull: bool = True) -> str:
    """``public.ecr.aws/lambda/python:3.12`` (see :func:`ensure_base`)."""
    return ensure_base(LAMBDA_BASE, log_dir, pull=pull)


@dataclass(frozen=True)
class _Standin:
    """How a base image's stand-in is made: its root file system, then ``docker import`` under its tags."""

    tags: tuple[str, ...]
    rootfs: Path
    build: Callable[[Path, Path], None]  # (rootfs, log_dir)
    env: Mapping[str, str]  # the real image's environment
    changes: tuple[str, ...]


MINBASE_ROOTFS = STANDIN_CACHE / f"bookworm-v{STANDIN_VERSION}"
LAMBDA_ROOTFS = STANDIN_CACHE / f"lambda-python3.12-v{STANDIN_VERSION}"


def _import(standin: _Standin) -> None:
    """``docker import`` the stand-in's root file system under its tags, with the real image's environment."""
    changes = [
        *(f"ENV {k}={v}" for k, v in standin.env.items()),
        f"LABEL {STANDIN_LABEL}={STANDIN_VERSION}",
        *standin.changes,
    ]
    archive = subprocess.Popen(
        ["tar", "-C", str(standin.rootfs), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE
    )
    imported = subprocess.run(
        ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", standin.tags[0]],
        stdin=archive.stdout,
        env={**os.environ, "DOCKER_HOST": docker_host()},
        capture_output=True,
        text=True,
    )
    archive.wait()
    if imported.returncode != 0:
        raise StackError(f"docker import failed: {imported.stderr}")
    for tag in standin.tags[1:]:
        docker("tag", standin.tags[0], tag, timeout=30, check=True)


def _run_logged(cmd: list[str], log: Path, **kwargs: Any) -> None:
    with log.open("a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if done.returncode != 0:
        raise StackError(f"{cmd[0]} failed ({done.returncode}):\n{log_tail(log)}")


def _staging() -> Path:
    STANDIN_CACHE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="rootfs-", dir=STANDIN_CACHE))


def _complete(staging: Path, rootfs: Path) -> None:
    (staging / ".complete").touch()
    shutil.rmtree(rootfs, ignore_errors=True)
    staging.rename(rootfs)


def _build_minbase(rootfs: Path, log_dir: Path) -> None:
    """Debian bookworm (minbase) with the libraries a Python needs, trusting what this machine trusts.

    On these machines the package registries are reached through a certificate authority that only the
    host's trust store holds; the stand-in adds those certificates (to /usr/local/share/ca-certificates, so
    an image's own ``update-ca-certificates`` keeps them) so that pip and apt inside an image build reach
    them too. No Dockerfile carries them, and a real base image never gets them.
    """
    log = log_dir / "standin.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}", "bookworm"]
    _run_logged([*cmd, str(staging), DEBIAN_MIRROR], log)
    theirs = set(_certificates(staging / "etc/ssl/certs/ca-certificates.crt"))
    extra = [c for c in _certificates(Path("/etc/ssl/certs/ca-certificates.crt")) if c not in theirs]
    for i, cert in enumerate(extra):
        (staging / "usr/local/share/ca-certificates" / f"host-{i}.crt").write_text(cert)
    if extra:
        _run_logged(["chroot", str(staging), "update-ca-certificates"], log)
    _run_logged(["chroot", str(staging), "apt-get", "clean"], log)
    _complete(staging, rootfs)


def _certificates(bundle: Path) -> list[str]:
    text = bundle.read_text() if bundle.is_file() else ""
    end = "-----END CERTIFICATE-----"
    return [part[part.index("-----BEGIN") :] + end + "\n" for part in text.split(end) if "-----BEGIN" in part]


def _build_lambda_rootfs(rootfs: Path, log_dir: Path) -> None:
    """The minimal Debian, this machine's Python 3.12 as /var/lang (with pip), awslambdaric and boto3 as the
    runtime, the RIE SAM's wheel carries, the real image's bootstrap and entrypoint, and a dnf for builds."""
    log = log_dir / "standin.log"
    if not (MINBASE_ROOTFS / ".complete").exists():
        _build_minbase(MINBASE_ROOTFS, log_dir)
    staging = _staging()
    _run_logged(["cp", "-a", f"{MINBASE_ROOTFS}/.", str(staging)], log)
    (staging / ".complete").unlink()
    prefix = python312_prefix()
    lang = staging / "var" / "lang"
    (lang / "bin").mkdir(parents=True)
    shutil.copy2(prefix / "bin" / "python3.12", lang / "bin" / "python3.12")
    skip = shutil.ignore_patterns("test", "site-packages", "__pycache__", "idlelib", "tkinter", "ensurepip")
    shutil.copytree(prefix / "lib", lang / "lib", ignore=skip, symlinks=True)
    site = lang / "lib" / "python3.12" / "site-packages"
    site.mkdir(exist_ok=True)
    _run_logged(["patchelf", "--set-rpath", "/var/lang/lib", str(lang / "bin" / "python3.12")], log)
    pip = [str(prefix / "bin" / "python3.12"), "-m", "pip", "install", "--quiet", "--no-compile"]
    pip += ["--only-binary=:all:"]
    _run_logged([*pip, "--target", str(site), "pip"], log)
    runtime = staging / "var" / "runtime"
    _run_logged([*pip, "--target", str(runtime), "awslambdaric", "boto3==1.40.4"], log)
    scripts = {
        lang / "bin" / "python3": None,
        lang / "bin" / "python": None,
        lang / "bin" / "pip3.12": PIP,
        lang / "bin" / "pip3": PIP,
        lang / "bin" / "pip": PIP,
        runtime / "bootstrap": BOOTSTRAP,
        staging / "lambda-entrypoint.sh": ENTRYPOINT,
        staging / "usr" / "bin" / "dnf": DNF,
    }
    for path, text in scripts.items():
        if text is None:
            path.symlink_to("python3.12")
        else:
            path.write_text(text)
            path.chmod(0o755)
    (staging / "usr" / "bin" / "microdnf").symlink_to("dnf")
    (staging / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(_sam_rie(), staging / "usr" / "local" / "bin" / "aws-lambda-rie")
    (staging / "var" / "task").mkdir(parents=True, exist_ok=True)
    _complete(staging, rootfs)


_STANDINS = {
    LAMBDA_BASE: _Standin(
        (LAMBDA_BASE, f"{LAMBDA_BASE}-x86_64"),
        LAMBDA_ROOTFS,
        _build_lambda_rootfs,
        LAMBDA_ENV,
        ("WORKDIR /var/task", 'ENTRYPOINT ["/lambda-entrypoint.sh"]'),
    ),
    # Debian with the CUDA image's environment and no CUDA: the GPU worker's image runs on the CPU in it
    CUDA_BASE: _Standin((CUDA_BASE,), MINBASE_ROOTFS, _build_minbase, CUDA_ENV, ('CMD ["/bin/bash"]',)),
}


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


def in_container(env: Mapping[str, str], gateway: str = BRIDGE_IP) -> dict[str, str]:
    """``env`` as a container on the bridge needs it: the stack's loopback addresses (its endpoints and
    queue URLs) through ``gateway``, the host's address there."""
    return {k: v.replace(f"http://{LOOPBACK}:", f"http://{gateway}:") for k, v in env.items()}


def sam_env_vars(function_envs: Mapping[str, Mapping[str, str]], gateway: str = BRIDGE_IP) -> dict[str, Any]:
    """``sam local --env-vars``: each function's variables on the local stack, endpoints through ``gateway``.

    SAM passes only the variables the template declares; template.yaml declares the three
    ``AWS_ENDPOINT_URL_*`` as ``AWS::NoValue`` (so nothing of them is deployed) for this override to land.
    The keys are SAM's own: it gives the function the credentials of its own environment.
    """
    own = ("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_REGION")
    return {
        function: {k: v for k, v in in_container(env, gateway).items() if not k.startswith(own)}
        for function, env in function_envs.items()
    }


def bridge_gateway() -> str:
    """The host's address on the Docker bridge of the daemon :func:`docker_host` names."""
    done = docker(
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        timeout=30,
    )
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else BRIDGE_IP


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


__all__ = [
    "BRIDGE_IP",
    "CUDA_BASE",
    "DOCKER_HOST",
    "LAMBDA_BASE",
    "DockerDaemon",
    "bridge_gateway",
    "daemon_answers",
    "docker",
    "docker_host",
    "ensure_base",
    "ensure_lambda_base",
    "in_container",
    "sam_env_vars",
    "write_json",
]
