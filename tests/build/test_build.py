"""The artifacts `sam build` made (make build): sizes against Lambda's limit, and that they run on 3.12.

`make test` builds before it runs pytest; run `make build` first when running this file alone.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atelier.imaging import phash
from atelier.imaging.decode import decode
from atelier_dev.local.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
RUNTIME = ROOT / ".aws-sam" / "runtime"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def built_template() -> dict:
    path = BUILD / "template.yaml"
    assert path.exists(), "no build: run `make build` (make test does it first)"
    return load_template(path)


def zip_functions() -> dict[str, list[str]]:
    """Each zip function of the built template and the logical ids of its layers."""
    resources = built_template()["Resources"]
    out: dict[str, list[str]] = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        if res["Properties"].get("PackageType", "Zip") != "Zip":
            continue
        out[name] = [layer["Ref"] for layer in res["Properties"]["Layers"]]
    return out


def python312() -> str:
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    found = candidates[-1] if candidates else shutil.which("python3.12")
    assert found, "Python 3.12 (the Lambda runtime's version) is needed to import the built artifacts"
    return found


def test_every_zip_function_with_its_layers_fits_lambdas_unzipped_limit() -> None:
    functions = zip_functions()
    assert {"SketchFunction", "PencilFunction", "OilFunction", "WatercolorFunction", "AnimeFunction"} <= set(
        functions
    )
    assert functions["AnimeFunction"] == ["CoreLayer", "DepsLayer", "OnnxLayer"]
    sizes = {}
    for name, layers in functions.items():
        total = tree_size(BUILD / name) + sum(tree_size(BUILD / layer) for layer in layers)
        sizes[name] = total
        assert total < LAMBDA_UNZIPPED_LIMIT, f"{name}: {total / 2**20:.1f} MiB with its layers"
    print(json.dumps({k: round(v / 2**20, 1) for k, v in sizes.items()}))


def test_built_template_keeps_every_function_on_python_312_x86_64() -> None:
    tpl = built_template()
    assert tpl["Globals"]["Function"]["Architectures"] == ["x86_64"]
    for name in zip_functions():
        assert tpl["Resources"][name]["Properties"]["Runtime"] == "python3.12", name


@pytest.fixture(scope="module")
def dev_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained dev AnimeGANv2 model in a model cache folder (built here, on 3.11)."""
    root = tmp_path_factory.mktemp("models")
    cmd = [
        sys.executable,
        "-m",
        "atelier_dev.models.cli",
        "--cache",
        str(root),
        "build-dev",
        "--only",
        "animeganv2-dev",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.mark.parametrize("style", ["sketch", "pencil", "oil", "watercolor", "anime"])
def test_built_function_imports_and_renders_on_python_312(style: str, dev_models: Path) -> None:
    """Import the handler from the built layers as Lambda would, on 3.12, and render one sample."""
    assert RUNTIME.exists(), "no runtime packages: run `make build`"
    fn = f"{style.capitalize()}Function"
    layers = [BUILD / layer / "python" for layer in zip_functions()[fn]]
    path = os.pathsep.join([str(BUILD / fn), *map(str, layers), str(RUNTIME)])
    code = f"""
import json, sys
sys.path[:0] = {path!r}.split({os.pathsep!r})
import importlib
app = importlib.import_module("{style}.app")
from atelier.imaging import styles
from atelier.imaging.decode import decode
d = decode(open({str(ROOT / "samples" / "chelsea.jpg")!r}, "rb").read())
if "{style}" == "anime":
    from atelier.inference.anime import load_model
    from atelier.inference.models import installed_path
    out = load_model(installed_path("animeganv2-dev")).stylize(d.bgr)
else:
    out = styles.get("{style}").render(d.bgr)
from atelier.imaging import phash
result = {{"python": sys.version.split()[0], "shape": list(out.shape), "handler": callable(app.handler)}}
result["phash"] = [phash.backend(), phash.to_hex(phash.phash(d.bgr))]
print(json.dumps(result))
"""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ATELIER_BUCKET": "b",
        "ATELIER_STATUS_TABLE": "s",
        "ATELIER_IDEMPOTENCY_TABLE": "i",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONNOUSERSITE": "1",
        "ATELIER_MODEL_DIR": str(dev_models),
        "ATELIER_ANIME_MODEL": "animeganv2-dev",
    }
    proc = subprocess.run(
        [python312(), "-I", "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["python"].startswith("3.12")
    assert result["shape"] == [300, 451, 3] and result["handler"] is True
    # the layer carries the compiled pHash kernel, and on 3.12 it gives the value it gives here
    local = phash.to_hex(phash.phash(decode((ROOT / "samples" / "chelsea.jpg").read_bytes()).bgr))
    assert result["phash"] == ["native", local]
