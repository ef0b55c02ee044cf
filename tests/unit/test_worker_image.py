"""The GPU worker image installs what its code imports: infra/gpu-worker/requirements.txt is complete."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from tests.imports import top_level_modules_loaded_by

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "infra" / "gpu-worker" / "requirements.txt"
# The image's ONNX Runtime is the CUDA build; this machine's is the CPU one, with the same modules.
SAME_MODULES = {"onnxruntime-gpu": "onnxruntime"}

# What the worker's process imports: its entry point, the upscaler it loads on the first job, and ONNX
# Runtime's fp16 converter (imported when a model is converted).
IMPORTS = "atelier.entrypoints.gpu_worker", "atelier.inference.upscale", "onnxruntime.transformers.float16"
# Imported when present, not needed: botocore uses certifi's CA bundle if it is installed, its own otherwise.
OPTIONAL = {"certifi"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _listed() -> set[str]:
    names = set()
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = _canonical(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0])
            names.add(_canonical(SAME_MODULES.get(name, name)))
    return names


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` and everything they require, as installed here (extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement:
                todo.append(_canonical(re.split(r"[<>=!~\[; (]", requirement, maxsplit=1)[0]))
    return seen


def _imported_distributions() -> set[str]:
    providers = metadata.packages_distributions()
    modules = top_level_modules_loaded_by(IMPORTS)
    return {_canonical(dist) for module in modules for dist in providers.get(module, [])} - {"atelier"}


def test_every_package_the_worker_imports_is_in_its_image() -> None:
    imported = _imported_distributions()
    assert {"numpy", "opencv-python-headless", "onnxruntime", "boto3", "pillow", "simplejpeg"} <= imported
    missing = imported - _with_dependencies(_listed()) - OPTIONAL
    assert missing == set(), f"add to {REQUIREMENTS.relative_to(ROOT)}: {sorted(missing)}"
