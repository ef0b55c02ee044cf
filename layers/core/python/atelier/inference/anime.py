"""AnimeGANv2 inference core: one ONNX Runtime model per process, any aspect ratio, capped size.

The Lambda handler builds one :class:`AnimeModel` at module level (``load_model`` caches it per path) and
calls :meth:`AnimeModel.stylize` per image. ``obtain_model_file`` finds the model file in the function
package or fetches it once from an S3 model prefix into /tmp, checked by SHA-256.

Two execution paths (``provider``): ``cpu``, ONNX Runtime's CPU provider in fp32 (the zip package), and
``openvino-bf16``, ONNX Runtime's OpenVINO provider computing in bfloat16 (the anime container image, which
installs onnxruntime-openvino). ``auto`` takes the second where it is installed and the CPU has bf16
instructions, else the first.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from atelier.config import model_tmp_dir
from atelier.inference.models import sha256_file
from atelier.inference.sessions import available_providers, open_session, session_options

DEFAULT_MAX_SIDE = 1024
MIN_SIDE = 32  # the generator's 7x7 reflection pads and two stride-2 stages need a few pixels

SESSIONS_CREATED = 0  # how many AnimeModels this process has built (see load_model)
_CACHE: dict[tuple[Any, ...], AnimeModel] = {}
_LOCK = threading.Lock()

PROVIDERS = ("auto", "cpu", "openvino-bf16")
_OPENVINO = "OpenVINOExecutionProvider"
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo names of the instructions OpenVINO's bf16 uses


def working_size(height: int, width: int, max_side: int, multiple: int) -> tuple[int, int]:
    """(height, width) the model runs at: longest side capped, each side rounded to ``multiple``."""
    if height < 1 or width < 1:
        raise ValueError("empty image")
    scale = min(1.0, max_side / max(height, width))

    def side(n: int) -> int:
        v = max(MIN_SIDE, n * scale)
        r = max(multiple, round(v / multiple) * multiple)
        if r > max_side:
            r = max(multiple, (max_side // multiple) * multiple)
        return int(r)

    return side(height), side(width)


def output_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) of the result: the input's size, scaled down so the longest side fits ``max_side``."""
    longest = max(height, width)
    if longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU reports bfloat16 instructions (AVX512_BF16 or AMX-BF16)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flag_lines = (line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags"))
    return any(_BF16_FLAGS & set(flags.split()) for flags in flag_lines)


def resolve_provider(requested: str = "auto") -> str:
    """The execution path for ``requested`` (one of :data:`PROVIDERS`) in this process, never ``auto``."""
    if requested not in PROVIDERS:
        raise ValueError(f"unknown anime provider {requested!r}; one of {', '.join(PROVIDERS)}")
    has_openvino = _OPENVINO in available_providers()
    if requested == "auto":
        return "openvino-bf16" if has_openvino and cpu_has_bf16() else "cpu"
    if requested == "openvino-bf16" and not has_openvino:
        raise RuntimeError(
            "the openvino-bf16 anime provider needs onnxruntime-openvino (the anime container image), "
            f"and this ONNX Runtime has only {', '.join(available_providers())}"
        )
    return requested


def openvino_options(threads: int, input_shape: str | None = None) -> dict[str, str]:
    """The openvino-bf16 path's provider options; ``input_shape`` (``name[1,3,H,W]``) fixes a shape."""
    options = {
        "device_type": "CPU",
        "num_of_threads": str(threads),
        "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}),
    }
    if input_shape:
        options["reshape_input"] = input_shape
    return options


class AnimeModel:
    """A loaded AnimeGANv2 generator (NCHW or NHWC, values in [-1, 1]) ready to stylize BGR images.

    On ``openvino-bf16`` the model is compiled for one input shape at a time (OpenVINO's ``reshape_input``)
    and recompiled when the working size changes; only the current shape's compiled model is kept. A
    static shape lets OpenVINO plan its buffers: 353 MB of peak RSS at 512x512 against 433-469 MB with a
    dynamic shape. A change of working size costs 0.6-1.1 s (bench/README.md).
    """

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        threads: int | None = None,
        layout: str | None = None,
        size_multiple: int | None = None,
        optimized_path: str | None = None,
        max_side: int | None = None,
        provider: str = "auto",
    ) -> None:
        global SESSIONS_CREATED
        import onnxruntime as ort

        self.provider = resolve_provider(provider)
        self.threads = threads or min(os.cpu_count() or 1, 6)
        self.compiles = 0  # OpenVINO compilations (one per working size in a row)
        self._lock = threading.Lock()
        self._shape: tuple[int, ...] | None = None
        self._compiled: Any = None
        if self.provider == "cpu":
            source = model if isinstance(model, bytes) else str(model)
            opts = session_options(self.threads, optimized_path, max_side)
            self.session: Any = open_session(source, opts, ["CPUExecutionProvider"])
            described = self.session
        else:
            self._model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
            self.session = None
            quick = ort.SessionOptions()  # a CPU session only to read the model's metadata, then dropped
            quick.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            described = open_session(self._model_bytes, quick, ["CPUExecutionProvider"])
        SESSIONS_CREATED += 1
        meta = described.get_modelmeta().custom_metadata_map
        inp = described.get_inputs()[0]
        self.input_name: str = inp.name
        self.output_name: str = described.get_outputs()[0].name
        self.layout: str = layout or meta.get("layout") or _guess_layout(inp.shape)
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"unsupported layout {self.layout!r}")
        self.size_multiple: int = size_multiple or int(meta.get("size_multiple", "32"))
        trained = meta.get("trained")
        self.trained: bool | None = None if trained is None else trained == "true"

    def stylize(self, bgr: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
        """Anime rendering of an 8-bit BGR image, at its size (longest side capped at ``max_side``)."""
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError("stylize expects an HxWx3 uint8 BGR image")
        h, w = bgr.shape[:2]
        wh, ww = working_size(h, w, max_side, self.size_multiple)
        oh, ow = output_size(h, w, max_side)
        out = self.run_rgb_blob(_to_blob(bgr, wh, ww, self.layout))
        return _from_output(out, self.layout, oh, ow)

    def run_rgb_blob(self, blob: np.ndarray) -> np.ndarray:
        """Run the generator on a prepared [-1, 1] RGB tensor in the model's layout."""
        if self.session is not None:
            (out,) = self.session.run([self.output_name], {self.input_name: blob})
            return np.asarray(out)
        with self._lock:  # one compiled shape at a time
            (out,) = self._compiled_for(blob.shape).run([self.output_name], {self.input_name: blob})
        return np.asarray(out)

    def _compiled_for(self, shape: tuple[int, ...]) -> Any:
        import onnxruntime as ort

        if shape != self._shape:
            self._compiled = self._shape = None  # release the previous shape's buffers before compiling
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            options = openvino_options(self.threads, f"{self.input_name}[{','.join(map(str, shape))}]")
            compiled = open_session(self._model_bytes, opts, [(_OPENVINO, options)])
            if compiled.get_providers()[0] != _OPENVINO:
                raise RuntimeError("ONNX Runtime did not take the OpenVINO execution provider")
            self._compiled, self._shape = compiled, tuple(shape)
            self.compiles += 1
        return self._compiled


def _guess_layout(shape: list[Any]) -> str:
    return "NHWC" if len(shape) == 4 and shape[3] == 3 else "NCHW"


def _to_blob(bgr: np.ndarray, height: int, width: int, layout: str) -> np.ndarray:
    h, w = bgr.shape[:2]
    shrinking = height * width < h * w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    img = bgr if (h, w) == (height, width) else cv2.resize(bgr, (width, height), interpolation=interp)
    if layout == "NCHW":
        # one pass: BGR->RGB, (x - 127.5) / 127.5, HWC->CHW
        blob: np.ndarray = cv2.dnn.blobFromImage(
            img, 1.0 / 127.5, (width, height), (127.5, 127.5, 127.5), True
        )
        return blob
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return (rgb.astype(np.float32) * np.float32(1.0 / 127.5) - np.float32(1.0))[None]


def _from_output(out: np.ndarray, layout: str, height: int, width: int) -> np.ndarray:
    hwc = out[0].transpose(1, 2, 0) if layout == "NCHW" else out[0]
    rgb = cv2.convertScaleAbs(np.ascontiguousarray(hwc), alpha=127.5, beta=127.5)  # saturating round to uint8
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if bgr.shape[:2] != (height, width):
        shrinking = height * width < bgr.shape[0] * bgr.shape[1]
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return bgr


def load_model(
    path: str | Path,
    *,
    threads: int | None = None,
    layout: str | None = None,
    max_side: int | None = None,
    provider: str = "auto",
) -> AnimeModel:
    """The process-wide AnimeModel for ``path`` (built on the first call, the same object afterwards).

    ``max_side`` (the largest image it will see) sizes the shared arena; see :func:`session_options`.
    """
    key = (str(Path(path).resolve()), threads, layout, max_side, provider)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = AnimeModel(path, threads=threads, layout=layout, max_side=max_side, provider=provider)
            _CACHE[key] = model
        return model


def clear_cache() -> None:
    """Forget the cached models (tests)."""
    with _LOCK:
        _CACHE.clear()


S3Download = Callable[[str, str, str], None]


def obtain_model_file(
    name: str,
    *,
    sha256: str,
    package_dir: str | Path | None = None,
    s3_uri: str | None = None,
    s3: Any = None,
    tmp_dir: str | Path | None = None,
    precision: str = "fp32",
) -> Path:
    """Path of model ``name``: from the function package, else fetched once from S3 into /tmp.

    ``s3`` is a boto3 S3 client or a callable ``(bucket, key, dest_path)``; the file is checked against
    ``sha256`` wherever it comes from, and a cached copy in /tmp is reused only if it still matches.
    """
    filename = f"model.{precision}.onnx"
    if package_dir is not None:
        candidate = Path(package_dir) / name / filename
        if candidate.exists():
            _require_sha(candidate, sha256)
            return candidate
    if not s3_uri:
        raise FileNotFoundError(f"model {name} is not in the package and no S3 model prefix is set")
    target = Path(tmp_dir or model_tmp_dir()) / name / filename
    if target.exists() and sha256_file(target) == sha256.lower():
        return target
    bucket, _, prefix = s3_uri.removeprefix("s3://").partition("/")
    key = "/".join(p for p in (prefix.strip("/"), name, filename) if p)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    if s3 is None:
        raise ValueError("an S3 client or download callable is needed to fetch the model")
    download: S3Download = s3.download_file if hasattr(s3, "download_file") else s3
    download(bucket, key, str(part))
    try:
        _require_sha(part, sha256)
    except ValueError:
        part.unlink(missing_ok=True)
        raise
    part.replace(target)
    return target


def _require_sha(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected.lower():
        raise ValueError(f"{path}: SHA-256 {got} does not match the expected {expected}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


__all__ = [
    "DEFAULT_MAX_SIDE",
    "PROVIDERS",
    "AnimeModel",
    "clear_cache",
    "cpu_has_bf16",
    "load_model",
    "obtain_model_file",
    "openvino_options",
    "output_size",
    "psnr",
    "resolve_provider",
    "working_size",
]
