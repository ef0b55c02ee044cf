"""Super-resolution inference core: one ONNX Runtime session per process, tiled and seam-free.

Providers, best first: TensorRT (only when asked for: it builds an engine per tile shape, minutes on
first use), CUDA with an FP16 model and IO binding, and the CPU with the FP32 model, which is the path
the tests run. The CUDA and TensorRT paths follow ONNX Runtime's documented API but have not been run
on a GPU in this repository's test suite.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort

from atelier.inference import tiling
from atelier.inference.models import edsr, fp16
from atelier.inference.sessions import available_providers, open_session

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]
PROVIDERS: tuple[Provider, ...] = ("auto", "tensorrt", "cuda", "cpu")
_PROVIDER_NAMES: dict[str, Literal["tensorrt", "cuda", "cpu"]] = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "CPUExecutionProvider": "cpu",
}

log = logging.getLogger(__name__)

DEFAULT_GPU_BUDGET = 1536 * 1024 * 1024
"""Activation budget for choosing GPU tiles; leaves room under a 2 GB peak for weights and workspace."""


def pick_provider(requested: Provider = "auto") -> Literal["tensorrt", "cuda", "cpu"]:
    """Resolve 'auto' to CUDA when this onnxruntime build has it, else the CPU; check explicit choices."""
    have = available_providers()
    if requested == "auto":
        return "cuda" if "CUDAExecutionProvider" in have else "cpu"
    needed = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(requested)
    if needed is not None and needed not in have:
        raise RuntimeError(f"{requested} requested but this onnxruntime offers only {', '.join(have)}")
    return requested


class Upscaler:
    """An upscaling model loaded once; ``upscale`` runs it whole-image or tiled without seams."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        provider: Provider = "auto",
        precision: Literal["auto", "fp32", "fp16"] = "auto",
        fp16_model_path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        device_id: int = 0,
        gpu_budget_bytes: int = DEFAULT_GPU_BUDGET,
        gpu_mem_limit_bytes: int | None = None,
        trt_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Load the model, derive its scale and halo from the graph, and open one session.

        ``precision="auto"`` runs FP16 on a GPU and FP32 on the CPU.
        """
        model = onnx.load(str(model_path))
        self.scale = edsr.graph_scale(model)
        self.halo = edsr.graph_receptive_field(model)
        meta = {p.key: p.value for p in model.metadata_props}
        declared = meta.get("receptive_field")
        if declared is not None and int(declared) > self.halo:
            raise ValueError(f"model declares a receptive field of {declared} px, its graph only {self.halo}")
        self.metadata = meta
        self.provider = pick_provider(provider)
        self.device_id = device_id
        self.fp16 = self.provider != "cpu" if precision == "auto" else precision == "fp16"
        n_feats = int(meta.get("n_feats", "64"))
        self.bytes_per_pixel = edsr.activation_bytes_per_pixel(n_feats, self.scale, 2 if self.fp16 else 4)
        self.gpu_budget_bytes = gpu_budget_bytes

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if self.fp16:
            if fp16_model_path is not None:
                payload: bytes = Path(fp16_model_path).read_bytes()
            else:
                payload = fp16.convert(model).SerializeToString()
        else:
            payload = model.SerializeToString()
        del model
        self.session = open_session(payload, options, self._provider_list(gpu_mem_limit_bytes, trt_cache_dir))
        got = _PROVIDER_NAMES.get(self.session.get_providers()[0], "cpu")
        if got != self.provider:
            # ONNX Runtime fell back (a GPU build on a machine without a usable GPU, say): what runs from
            # here is what the session really got, never the device path of the provider asked for.
            log.warning("asked for %s, the session got %s: running on %s", self.provider, got, got)
            self.provider = got
            if got == "cpu" and precision == "auto" and self.fp16:
                self.fp16 = False
                self.bytes_per_pixel = edsr.activation_bytes_per_pixel(n_feats, self.scale, 4)
                self.session = open_session(
                    str(model_path), options, ["CPUExecutionProvider"]
                )  # the fp32 file
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._bound: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}

    def _provider_list(self, mem_limit: int | None, trt_cache: str | os.PathLike[str] | None) -> list[Any]:
        """Provider names and options, best first, always ending with the CPU."""
        cuda_options: dict[str, Any] = {
            "device_id": self.device_id,
            "arena_extend_strategy": "kSameAsRequested",  # grow by what tiles need, not by powers of two
            "cudnn_conv_algo_search": "HEURISTIC",  # EXHAUSTIVE may try algorithms with huge workspaces
            "cudnn_conv_use_max_workspace": "0",
            "do_copy_in_default_stream": True,
        }
        if mem_limit is not None:
            cuda_options["gpu_mem_limit"] = int(mem_limit)
        providers: list[Any] = []
        if self.provider == "tensorrt":
            trt_options: dict[str, Any] = {"device_id": self.device_id, "trt_fp16_enable": self.fp16}
            if trt_cache is not None:
                trt_options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache)}
            providers.append(("TensorrtExecutionProvider", trt_options))
        if self.provider in ("tensorrt", "cuda"):
            providers.append(("CUDAExecutionProvider", cuda_options))
        providers.append("CPUExecutionProvider")
        return providers

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses."""
        return list(self.session.get_providers())

    def default_tiling(self, height: int, width: int) -> tiling.TileChoice:
        """Tile and batch for an image: a fixed CPU default, or what fits the GPU budget."""
        if self.provider == "cpu":
            return tiling.CPU_DEFAULT
        return tiling.choose_tiling(
            self.gpu_budget_bytes, self.bytes_per_pixel, self.halo, image_shape=(height, width)
        )

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Run one NCHW float32 RGB batch in [0, 255]; return the upscaled NCHW float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.provider == "cpu":
            return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        return self._run_bound(batch)

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        """CUDA path: input and output live in device buffers reused for every batch of one shape."""
        shape = tuple(batch.shape)
        if shape not in self._bound:
            n, c, h, w = shape
            device_in = ort.OrtValue.ortvalue_from_shape_and_type(
                list(shape), np.float32, "cuda", self.device_id
            )
            out_shape = [n, c, h * self.scale, w * self.scale]
            device_out = ort.OrtValue.ortvalue_from_shape_and_type(
                out_shape, np.float32, "cuda", self.device_id
            )
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self.input_name, device_in)
            binding.bind_ortvalue_output(self.output_name, device_out)
            if len(self._bound) >= 2:  # a full batch and the last, shorter one: keep two shapes at most
                self._bound.pop(next(iter(self._bound)))
            self._bound[shape] = (binding, device_in, device_out)
        binding, device_in, device_out = self._bound[shape]
        device_in.update_inplace(batch)  # host -> device copy into the bound buffer
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return np.asarray(device_out.numpy())

    def _prepare(self, bgr: np.ndarray) -> np.ndarray:
        """An RGB view of a BGR (or grey) uint8 image, with no copy of the pixels."""
        if bgr.ndim == 2:
            bgr = np.repeat(bgr[:, :, None], 3, axis=2)
        if bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image (H, W, 3), got shape {bgr.shape}")
        return bgr[:, :, ::-1]

    def plan(
        self, height: int, width: int, tile: int | None = None, batch: int | None = None
    ) -> tiling.TileChoice:
        """Resolve tile and batch for an image: None picks the default, tile 0 means whole-image inference."""
        if tile == 0:
            return tiling.TileChoice(tile=0, batch=1)
        auto = self.default_tiling(height, width)
        return tiling.TileChoice(tile=tile or auto.tile, batch=batch or auto.batch)

    def upscale(
        self,
        bgr: np.ndarray,
        *,
        tile: int | None = None,
        batch: int | None = None,
        out: np.ndarray | None = None,
        dtype: type[np.generic] | np.dtype = np.uint8,
    ) -> np.ndarray:
        """Upscale a BGR image; ``tile=0`` runs the whole image at once, None picks a tile size."""
        rgb = self._prepare(bgr)
        choice = self.plan(bgr.shape[0], bgr.shape[1], tile, batch)
        h, w = rgb.shape[:2]
        if out is None:
            out = np.empty((h * self.scale, w * self.scale, 3), dtype=dtype)
        tiling.upscale_tiled(
            rgb,
            self.run_batch,
            scale=self.scale,
            tile=choice.tile,
            halo=self.halo,
            batch=choice.batch,
            out=out[:, :, ::-1],
        )
        return out

    def iter_bands(
        self, bgr: np.ndarray, *, tile: int | None = None, batch: int | None = None
    ) -> Iterator[tiling.Band]:
        """Upscale as BGR uint8 row bands, top to bottom, for streaming to an encoder."""
        rgb = self._prepare(bgr)
        choice = self.plan(bgr.shape[0], bgr.shape[1], tile, batch)
        for band in tiling.iter_bands(
            rgb,
            self.run_batch,
            scale=self.scale,
            tile=choice.tile,
            halo=self.halo,
            batch=choice.batch,
            dtype=np.uint8,
        ):
            yield tiling.Band(band.top, np.ascontiguousarray(band.pixels[:, :, ::-1]))
