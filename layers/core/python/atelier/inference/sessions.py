"""The one place ONNX Runtime sessions are made: providers, threads and the shared CPU arena.

:mod:`atelier.inference.anime` runs one image at a time on a few CPU cores (:func:`session_options`, with the
process-wide arena sized for the largest image); :mod:`atelier.inference.upscale` asks for GPU providers
first and keeps its own provider options. Both open their sessions through :func:`open_session`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

# The arena that sessions built with a ``max_side`` share: one region, reserved (not touched) up front and
# sized for the largest image, so that freed activations are reused in place instead of each growth step
# mapping a new, doubled region. Pages count only once written. Measured on the dev generator (bench/anime.py,
# peak RSS of the whole process): 334 MB at 512 px and 1018 MB at 1024 px (per-session arenas: 376 MB and
# 1193 MB). The region must hold the arena's high-water mark (0.9 GB at 1024 px); one too small overflows
# into doubled regions and costs more than it saves, hence 2 KiB per pixel.
ARENA_BYTES_PER_PIXEL = 2048
_ARENA_MAX = 2**31 - 1  # OrtArenaCfg takes a 32-bit initial chunk size
_ENV_ARENA: list[int] = []  # initial size of the process-wide arena, once registered
_ARENA_LOCK = threading.Lock()


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def open_session(model: bytes | str, options: Any, providers: Sequence[Any]) -> Any:
    """An InferenceSession of ``model`` (bytes or a path) on ``providers``, best first.

    ONNX Runtime falls back down the list where a provider cannot start; the session's
    ``get_providers()`` says which it really got.
    """
    import onnxruntime as ort

    return ort.InferenceSession(model, options, providers=list(providers))


def arena_bytes(max_side: int) -> int:
    """Initial size of the shared arena for images whose longest side is at most ``max_side``."""
    return int(min(_ARENA_MAX, max(64 << 20, ARENA_BYTES_PER_PIXEL * max_side * max_side)))


def _use_env_arena(opts: Any, size: int) -> None:
    """Register the process-wide CPU arena (once; the first size wins) and make ``opts`` use it."""
    import onnxruntime as ort

    with _ARENA_LOCK:
        if not _ENV_ARENA:
            info = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            # max_mem 0 (no cap), kNextPowerOfTwo growth if ever exceeded, default dead-bytes threshold
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, size, -1))
            _ENV_ARENA.append(size)
    opts.add_session_config_entry("session.use_env_allocators", "1")


def session_options(
    threads: int | None = None, optimized_path: str | None = None, max_side: int | None = None
) -> Any:
    """ONNX Runtime options tuned for one image at a time on a few CPU cores and little memory.

    With ``max_side`` the session allocates from the shared arena sized by :func:`arena_bytes`.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or min(os.cpu_count() or 1, 6)
    opts.inter_op_num_threads = 1
    # Shapes change with every image, so a memory pattern cannot be reused. The arena stays on: without
    # it every run maps and faults in its activations afresh (measured 2x slower, same peak RSS).
    opts.enable_mem_pattern = False
    opts.enable_cpu_mem_arena = True
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    if max_side:
        _use_env_arena(opts, arena_bytes(max_side))
    return opts
