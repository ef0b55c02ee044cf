"""The runner of a detached local stack (``atelier local up``): ``python -m atelier_dev.local.runner DIR``.

It attaches to the servers ``up`` started (stack.json), then, until SIGTERM (``atelier local down``):
- the dispatcher plays S3 -> EventBridge -> Lambda, each function in warm processes of its own that are
  killed past the function's Timeout, held to its MemorySize and its ReservedConcurrentExecutions, so a
  photo any S3 client drops into the bucket renders, and one function's crash leaves the others running;
- the upload API and the gallery are served on loopback;
- the upscale worker consumes the upscale queue on the CPU, as the GPU task does (not with
  ``--no-worker``: the worker's image, say, consumes it instead).

Once all three serve, it writes runner.json (its pid, the API's URL), which ``up`` waits for.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console

from atelier_dev.demo import dev_models, serve_worker
from atelier_dev.local.api_server import serve_api
from atelier_dev.local.stack import RUNNER_FILE, LocalStack

log = logging.getLogger("atelier.local.runner")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atelier_dev.local.runner")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--no-worker", action="store_true", help="leave the upscale queue to another worker")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    stack = LocalStack.attach(data_dir)
    model_dir = dev_models(Console(stderr=True))
    stack.env["ATELIER_MODEL_DIR"] = str(model_dir)
    stack.env["POWERTOOLS_METRICS_DISABLED"] = "true"  # no CloudWatch here; the functions still log
    stack.start_dispatcher(isolation="process", state_dir=data_dir / "dispatcher")
    url, stop_api = serve_api(stack)
    worker, worker_thread = (None, None) if args.no_worker else serve_worker(stack, model_dir)
    runner = {
        "pid": os.getpid(),
        "create_time": psutil.Process().create_time(),
        "api": url,
        "log": str(data_dir / "logs" / "runner.log"),
        "isolation": "process",
        "worker": worker is not None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = data_dir / f".{RUNNER_FILE}.tmp"
    tmp.write_text(json.dumps(runner, indent=2), encoding="utf-8")
    tmp.replace(data_dir / RUNNER_FILE)
    running = "the dispatcher and the upscale worker run" if worker else "the dispatcher runs (no worker)"
    log.info("serving: gallery and API on %s; %s", url, running)

    stop.wait()
    log.info("stopping")
    if worker is not None and worker_thread is not None:
        worker.request_stop()
        worker_thread.join(timeout=60)
    stop_api()
    stack.stop()  # the dispatcher and its functions' processes (the servers are `down`'s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
