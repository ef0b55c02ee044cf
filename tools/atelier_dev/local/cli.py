"""``atelier local up|status|down``: a detached local stack recorded in <dir>/stack.json."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_DIR = ".atelier/local"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Mount ``local`` (subcommands ``up``, ``status``, ``down``) on an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "local", help="run the local stack (SeaweedFS for S3, moto for DynamoDB and SQS) on loopback"
    )
    sub = parser.add_subparsers(dest="local_command", required=True)

    up = sub.add_parser(
        "up",
        help="start the stack detached: the servers, the template's resources, and a runner that renders "
        "what lands in the bucket, serves the upload API and the gallery, and runs the upscale worker",
    )
    up.add_argument("--dir", default=DEFAULT_DIR, help=f"state and data folder (default {DEFAULT_DIR})")
    up.add_argument("--template", default=None, help="template.yaml (default: the project's)")
    up.add_argument("--stack-name", default=None, help="prefix of the local resource names")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the servers")
    up.add_argument(
        "--listen",
        default=None,
        metavar="ADDR",
        help="the servers' address (default 127.0.0.1); 0.0.0.0 lets containers reach them, through "
        "the Docker bridge's gateway, and anyone on the network too",
    )
    up.add_argument(
        "--no-runner",
        action="store_true",
        help="the servers and resources only (no dispatcher, API or worker)",
    )
    up.add_argument(
        "--no-worker",
        action="store_true",
        help="no upscale worker in the runner: another one (the worker's image) consumes the queue",
    )
    up.set_defaults(func=_cmd_up)

    status = sub.add_parser("status", help="show what runs and where")
    status.add_argument("--dir", default=DEFAULT_DIR)
    group = status.add_mutually_exclusive_group()
    group.add_argument("--env", action="store_true", help="print `export` lines for the stack's variables")
    group.add_argument("--json", action="store_true", help="print stack.json")
    status.set_defaults(func=_cmd_status)

    sam_env = sub.add_parser(
        "sam-env",
        help="print `sam local --env-vars` JSON: each function's variables, endpoints for containers",
    )
    sam_env.add_argument("--dir", default=DEFAULT_DIR)
    sam_env.add_argument(
        "--gateway",
        default=None,
        help="the host's address seen from a container (default: the Docker bridge's)",
    )
    sam_env.set_defaults(func=_cmd_sam_env)

    docker = sub.add_parser(
        "docker",
        help="start this machine's own Docker daemon (as root; overlay2, a bridge at 172.30.0.1) where none "
        "answers, and print the DOCKER_HOST to use",
    )
    docker.add_argument("--stop", action="store_true", help="stop the daemon this command started")
    docker.set_defaults(func=_cmd_docker)

    image = sub.add_parser(
        "image",
        help="build a container image (anime, worker) from its Dockerfile, or run it against the stack",
    )
    image.add_argument("action", choices=("build", "env", "run"), help="env: print its --env-file")
    image.add_argument("name", choices=("anime", "worker"))
    image.add_argument("--dir", default=DEFAULT_DIR, help="the stack it runs against (env, run)")
    image.add_argument(
        "--models",
        default=None,
        help="worker build: build/models or infra/gpu-worker/models with edsr_baseline_x{2,3,4}[.fp16].onnx "
        "(default: the untrained dev x2 model, staged in build/models-dev)",
    )
    image.add_argument("--port", type=int, default=9000, help="anime run: the RIE's port on loopback")
    image.add_argument("--until-idle", action="store_true", help="worker run: stop once its queue is empty")
    image.set_defaults(func=_cmd_image)

    down = sub.add_parser("down", help="stop the servers started by `up`")
    down.add_argument("--dir", default=DEFAULT_DIR)
    down.set_defaults(func=_cmd_down)
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    from atelier_dev.local.stack import StackError, up

    kwargs: dict[str, Any] = {}
    if args.template:
        kwargs["template_path"] = args.template
    if args.stack_name:
        kwargs["stack_name"] = args.stack_name
    if args.listen:
        kwargs["listen"] = args.listen
    try:
        state = up(
            args.dir, timeout=args.timeout, serve=not args.no_runner, worker=not args.no_worker, **kwargs
        )
    except StackError as exc:
        print(f"atelier local up: {exc}", file=sys.stderr)
        return 1
    _print_status(state)
    print(f'\nUse it from a shell with: eval "$(atelier local status --dir {shlex.quote(args.dir)} --env)"')
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from atelier_dev.local.stack import read_runner, read_state, server_alive

    state = read_state(args.dir)
    if state is None:
        print(f"no local stack recorded in {args.dir}", file=sys.stderr)
        return 1
    runner = read_runner(args.dir)
    running = all(server_alive(s) for s in state.get("servers", {}).values())
    running = running and (runner is None or server_alive(runner))
    if args.env:
        for key, value in sorted(state.get("env", {}).items()):
            print(f"export {key}={shlex.quote(str(value))}")
    elif args.json:
        print(json.dumps(state, indent=2))
    else:
        _print_status(state)
    return 0 if running else 1


def _cmd_sam_env(args: argparse.Namespace) -> int:
    from atelier_dev.local.containers import bridge_gateway, sam_env_vars
    from atelier_dev.local.stack import LocalStack

    stack = LocalStack.attach(args.dir)
    assert stack.template is not None
    functions = [fn.logical_id for fn in stack.template.functions()]
    gateway = args.gateway or bridge_gateway()
    print(json.dumps(sam_env_vars({fn: stack.function_env(fn) for fn in functions}, gateway), indent=2))
    return 0


def _cmd_docker(args: argparse.Namespace) -> int:
    from atelier_dev.local.containers import SOCKET_DIR, DockerDaemon, docker_host
    from atelier_dev.local.stack import StackError, terminate_pid

    if args.stop:
        pidfile = SOCKET_DIR / "docker.pid"
        if not pidfile.exists():
            print("no daemon of this stack runs", file=sys.stderr)
            return 1
        terminate_pid(int(pidfile.read_text()), timeout=30)
        return 0
    try:
        DockerDaemon(SOCKET_DIR).start()
    except StackError as exc:
        print(f"atelier local docker: {exc}", file=sys.stderr)
        return 1
    print(f"export DOCKER_HOST={docker_host()}")
    return 0


def _cmd_image(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from atelier_dev.demo import dev_models
    from atelier_dev.local import images
    from atelier_dev.local.stack import LocalStack, StackError

    image = images.IMAGES[args.name]
    try:
        if args.action == "build":
            build_args = {}
            if args.name == "worker":
                models = (
                    Path(args.models) if args.models else images.stage_worker_models(dev_models(Console()))
                ).resolve()
                if not models.is_relative_to(images.ROOT):
                    raise StackError(f"--models {models} is outside the build context {images.ROOT}")
                build_args["MODELS"] = str(models.relative_to(images.ROOT))
            base = images.build(
                image, Path(args.dir) / "logs" / f"build-{args.name}.log", build_args=build_args
            )
            print(f"built {image.tag} (its base: {base})")
            return 0
        stack = LocalStack.attach(args.dir)
        if args.name == "anime":
            env = images.container_env(stack, "AnimeFunction")
            env |= images.stage_anime_model(stack, dev_models(Console(stderr=True)))
        else:
            env = images.container_env(stack)
        if args.action == "env":
            print(images.env_file_text(env), end="")
            return 0
        env_file = images.write_env_file(Path(args.dir) / f"{args.name}.env", env)
        worker_args = ["--until-idle"] if args.until_idle else []
        return images.run_foreground(image, env_file, port=args.port, args=worker_args)
    except StackError as exc:
        print(f"atelier local image {args.action} {args.name}: {exc}", file=sys.stderr)
        return 1


def _cmd_down(args: argparse.Namespace) -> int:
    from atelier_dev.local.stack import down

    stopped = down(args.dir)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running from {args.dir}")
    return 0


def _print_status(state: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from atelier_dev.local.stack import read_runner, server_alive

    console = Console()
    servers = Table(title=f"local stack {state.get('stack_name', '')} in {state.get('data_dir', '')}")
    for column in ("server", "state", "pid", "endpoint", "ports", "log"):
        servers.add_column(column)
    for name, info in state.get("servers", {}).items():
        alive = server_alive(info)
        ports = " ".join(f"{k} {v}" for k, v in (info.get("ports") or {}).items() if not k.endswith(".grpc"))
        if any(k.endswith(".grpc") for k in info.get("ports") or {}):
            ports += " (gRPC +10000)"
        servers.add_row(
            name,
            "[green]running[/green]" if alive else "[red]stopped[/red]",
            str(info.get("pid")),
            str(info.get("endpoint")),
            ports,
            str(info.get("log") or ""),
        )
    runner = read_runner(state.get("data_dir", ""))
    if runner is not None:
        servers.add_row(
            "runner",
            "[green]running[/green]" if server_alive(runner) else "[red]stopped[/red]",
            str(runner.get("pid")),
            str(runner.get("api")),
            "dispatcher, API and gallery, upscale worker",
            str(runner.get("log") or ""),
        )
    console.print(servers)
    if runner is not None:
        console.print(f"gallery and upload API: {runner.get('api')}")
    resources = Table(title="resources (from template.yaml)")
    resources.add_column("logical id")
    resources.add_column("local name")
    for logical_id, name in (state.get("resources") or {}).items():
        url = (state.get("queue_urls") or {}).get(logical_id)
        resources.add_row(logical_id, f"{name}  {url}" if url else name)
    console.print(resources)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``local`` on its own: ``python -m atelier_dev.local.cli up|status|down``."""
    parser = argparse.ArgumentParser(prog="atelier")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    args = parser.parse_args(["local", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
