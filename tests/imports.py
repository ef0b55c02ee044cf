"""What importing modules loads, seen from a fresh interpreter (this one has loaded everything already)."""

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def top_level_modules_loaded_by(names: Iterable[str]) -> set[str]:
    """The top-level packages a new Python process has loaded once it has imported ``names``."""
    script = (
        "import importlib, json, sys\n"
        "before = set(sys.modules)\n"
        f"for name in {sorted(names)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))
