"""The anime OpenVINO bf16 path in the container image's environment (.venv-ov) against the CPU fp32 path."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from atelier.inference import anime
from atelier_dev.models import animegan

ROOT = Path(__file__).resolve().parents[2]
OV_PYTHON = ROOT / ".venv-ov" / "bin" / "python"

# Runs in .venv-ov (onnxruntime-openvino): stylizes each image of images.npz on the openvino-bf16 path.
PROBE = """
import json, sys
import numpy as np
from atelier.inference import anime
model_path, images, out = sys.argv[1:4]
model = anime.AnimeModel(model_path, threads=2, provider="openvino-bf16")
frames = np.load(images)
results = {k: model.stylize(frames[k]) for k in sorted(frames.files)}
np.savez(out, **results)
print(json.dumps({"provider": model.provider, "compiles": model.compiles, "layout": model.layout}))
"""


@pytest.fixture(scope="module")
def probe_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("openvino")
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    smooth = np.kron(base, np.ones((16, 16, 1), np.uint8))  # 128x192, a photo-like low-detail image
    images = {
        "a_first": smooth,
        "b_same_shape": smooth[::-1].copy(),
        "c_odd": smooth[:77, :131].copy(),
        "d_back": smooth[:, ::-1].copy(),
        "e_wide": np.ascontiguousarray(smooth[:, :40].transpose(1, 0, 2).repeat(3, axis=1)),
    }
    np.savez(folder / "images.npz", **images)  # type: ignore[arg-type]
    return folder, images


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_openvino_bf16_matches_the_cpu_path(probe_inputs, layout: str) -> None:
    assert OV_PYTHON.exists(), f"{OV_PYTHON} is missing: `make setup` builds it (infra/anime-image)"
    folder, images = probe_inputs
    model = folder / f"{layout}.onnx"
    onnx.save(animegan.build(seed=3, layout=layout), str(model))
    out = folder / f"{layout}-out.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "layers" / "core" / "python"))
    proc = subprocess.run(
        [str(OV_PYTHON), "-c", PROBE, str(model), str(folder / "images.npz"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # shapes in a row: a, a (reused), c, d (back to a's), e -> four compilations
    assert report == {"provider": "openvino-bf16", "compiles": 4, "layout": layout}
    cpu = anime.AnimeModel(model, threads=1, provider="cpu")
    got = np.load(out)
    for name, img in images.items():
        expected = cpu.stylize(img)
        assert got[name].shape == expected.shape == img.shape, name
        assert anime.psnr(got[name], expected) >= 40.0, name  # the bar for reduced precision
