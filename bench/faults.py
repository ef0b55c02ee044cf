"""Faults and load at scale on the local stack: throughput and time to a terminal state, rules checked.

Run: ``.venv/bin/python bench/faults.py`` (300 uploads at once; ``--rate R`` paces them, R per second;
``--uploads N``, ``--seed S``, ``--workers W``).
Prints a Markdown table and exits non-zero if a rule of :func:`atelier_dev.local.faults.check` broke.

The scenario is :mod:`atelier_dev.local.faults` (also run, with 40 uploads, by
tests/integration/test_faults.py):
uploads through the API's presigned POST (mixed sizes 320-2400 px, JPEG/PNG/WebP, 1-3 styles, 15 % of
plain photos also anime with the dev model), 10 % hostile, 10 % duplicates (half at once), 5 % asking for
a missing model, 5 % killed mid-render; the dispatcher killed and restarted after 40 % of the uploads,
SeaweedFS restarted after 60 %. The handlers run in warm child processes, up to ``--workers`` at once,
with local timeouts and retry delays (atelier_dev.local.faults.TIMEOUTS_S, RETRY_DELAYS). Time to a terminal
state: from the upload's POST answered to the first GET /images/{id} that shows the style ended (polled
every 0.5 s), for every (image, style); throughput: uploads and jobs over the whole run, the wait for the
last job included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# isort: off
import atelier  # noqa: F401  (first: sets OpenCV's decode limits before cv2 loads)

# isort: on
from atelier_dev.local import faults
from atelier_dev.local.stack import LocalStack


def main(argv: list[str] | None = None) -> int:
    """Run the scenario once and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4, help="invocations at once (default 4)")
    parser.add_argument("--rate", type=float, default=None, help="uploads per second (default: a burst)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atelier-faults-") as tmp:
        root = Path(tmp)
        models = root / "models"
        build = [sys.executable, "-m", "atelier_dev.models.cli", "--cache", str(models), "build-dev"]
        subprocess.run([*build, "--only", "animeganv2-dev"], check=True, capture_output=True, timeout=600)
        parameters = {"AnimeModel": "animeganv2-dev"}
        with LocalStack(root / "stack", parameters=parameters, moto_mode="process") as stack:
            stack.env["ATELIER_MODEL_DIR"] = str(models)
            stack.env["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the table, not every render's log line
            os.environ.update(stack.env)
            uploads = faults.plan(args.uploads, seed=args.seed)
            result = faults.on_stack(
                stack, uploads, root / "dispatcher", max_workers=args.workers, bound=3600.0, rate=args.rate
            )
    summary = faults.summary(result)
    problems = faults.check(result)
    kinds = ", ".join(f"{k} {v}" for k, v in summary["kinds"].items())
    print(
        f"{summary['uploads']} uploads ({kinds}), {summary['jobs']} jobs, {args.workers} at once; "
        f"{summary['killed']} invocations killed; restarts (s): {summary['restarts_s']}\n"
    )
    print("| run (s) | uploads/min | jobs/min | p50 (s) | p95 (s) | max (s) | dead letters | rules broken |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {summary['seconds']} | {summary['uploads_per_min']} | {summary['jobs_per_min']} | "
        f"{summary['p50_s']} | {summary['p95_s']} | {summary['max_s']} | {summary['dead_letters']} | "
        f"{len(problems)} |"
    )
    for problem in problems:
        print(f"- {problem}")
    print("\n" + json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
