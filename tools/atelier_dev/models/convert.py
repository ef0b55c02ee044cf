"""Conversion to ONNX: PyTorch state dicts read without torch, fp16 copies for GPU models.

A ``.pt`` file is either a zip archive (``<root>/data.pkl`` plus one raw file per tensor storage, the format
of torch >= 1.6) or the legacy stream (magic number, protocol version, system info, the pickle, the
storage keys, then each storage's bytes). Either way the pickle is read by an unpickler that resolves
only the handful of globals a state dict needs; anything else is refused.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from atelier.inference.models import ModelEntry

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class UnsafePickle(ValueError):
    """The checkpoint's pickle asks for something a plain state dict never needs."""


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


class _Tensor:
    """A tensor as the pickle describes it; materialised once the storages are known."""

    def __init__(self, storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


class _Storage:
    def __init__(self, key: str, dtype: np.dtype[Any], numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes | io.BytesIO) -> None:
        super().__init__(data if isinstance(data, io.BytesIO) else io.BytesIO(data))
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickle(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafePickle(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickle("storage of an unknown type")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return self.storages[key]


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        base = obj.storage.array
        if base is None:
            raise ValueError(f"storage {obj.storage.key} has no data")
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[obj.offset :], shape=obj.size, strides=tuple(s * itemsize for s in obj.stride)
        )
        return np.array(view, copy=True)
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a PyTorch checkpoint as numpy arrays keyed by name, without importing torch."""
    path = Path(path)
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path.read_bytes())
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError("the checkpoint does not hold a state dict")
    arrays = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise ValueError("the checkpoint holds no tensors")
    return arrays


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise ValueError("not a PyTorch zip checkpoint (no single data.pkl)")
        root = pkl[0][: -len("data.pkl")]
        unpickler = _RestrictedUnpickler(zf.read(pkl[0]))
        obj = unpickler.load()
        for key, storage in unpickler.storages.items():
            raw = zf.read(f"{root}data/{key}")
            storage.array = np.frombuffer(raw, dtype=storage.dtype, count=storage.numel)
    return _materialise(obj)


def _read_legacy(data: bytes) -> Any:
    stream = io.BytesIO(data)
    if _plain_load(stream) != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (bad magic number)")
    if _plain_load(stream) != _LEGACY_PROTOCOL:
        raise ValueError("unsupported legacy checkpoint protocol")
    _plain_load(stream)  # system info: byte order and type sizes
    unpickler = _StreamUnpickler(stream)
    obj = unpickler.load()
    for key in _plain_load(stream):
        storage = unpickler.storages[str(key)]
        (numel,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(numel * storage.dtype.itemsize)
        storage.array = np.frombuffer(raw, dtype=storage.dtype, count=numel)
    return _materialise(obj)


class _StreamUnpickler(_RestrictedUnpickler):
    def persistent_load(self, pid: Any) -> Any:
        # legacy ids carry a sixth element (view metadata), unused by state dicts
        if isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage":
            return super().persistent_load(pid[:5])
        return super().persistent_load(pid)


def _plain_load(stream: io.BytesIO) -> Any:
    class Plain(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise UnsafePickle(f"refusing to load {module}.{name} from a checkpoint header")

    return Plain(stream).load()


# --- writing (tests, fixtures): the same two formats, emitted opcode by opcode, no torch needed ---

_DTYPE_STORAGE = {np.dtype(v).str: k for k, v in _STORAGE_DTYPES.items()}


def _p_str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _p_int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _p_ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_p_int(v) for v in values) + b"t"


def _state_dict_pickle(weights: Mapping[str, np.ndarray], legacy: bool) -> tuple[bytes, list[np.ndarray]]:
    out = [b"\x80\x02", b"ccollections\nOrderedDict\n)R", b"("]
    arrays: list[np.ndarray] = []
    for i, (name, value) in enumerate(weights.items()):
        arr = np.ascontiguousarray(value)
        storage = _DTYPE_STORAGE[arr.dtype.newbyteorder("<").str if arr.dtype.itemsize > 1 else arr.dtype.str]
        arrays.append(arr)
        strides = tuple(s // arr.itemsize for s in arr.strides)
        pid = b"(" + _p_str("storage") + f"ctorch\n{storage}\n".encode() + _p_str(str(i)) + _p_str("cpu")
        pid += _p_int(arr.size) + (b"N" if legacy else b"") + b"tQ"
        args = b"(" + pid + _p_int(0) + _p_ints(arr.shape) + _p_ints(strides) + b"\x89"
        args += b"ccollections\nOrderedDict\n)Rt"
        out.append(_p_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R")
    out.append(b"u.")
    return b"".join(out), arrays


def write_state_dict(path: str | Path, weights: Mapping[str, np.ndarray], legacy: bool = False) -> None:
    """Write ``weights`` as a PyTorch checkpoint (zip or legacy format) that torch.load would read."""
    pkl, arrays = _state_dict_pickle(weights, legacy)
    path = Path(path)
    if not legacy:
        root = path.stem or "archive"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(f"{root}/data.pkl", pkl)
            zf.writestr(f"{root}/byteorder", "little")
            for i, arr in enumerate(arrays):
                zf.writestr(f"{root}/data/{i}", arr.astype(arr.dtype.newbyteorder("<")).tobytes())
            zf.writestr(f"{root}/version", "3\n")
        return
    buf = io.BytesIO()
    for header in (_LEGACY_MAGIC, _LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    buf.write(pkl)
    pickle.dump([str(i) for i in range(len(arrays))], buf, protocol=2)
    for arr in arrays:
        buf.write(struct.pack("<q", arr.size))
        buf.write(arr.tobytes())
    path.write_bytes(buf.getvalue())


# --- conversion ---


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of ``model`` with fp32 inputs and outputs (``keep_io_types``); see :mod:`fp16`."""
    from atelier.inference.models import fp16

    return fp16.convert(model)


def builder_for(entry: ModelEntry) -> Callable[[dict[str, np.ndarray] | None, int], onnx.ModelProto]:
    """A function (weights or None, seed) -> ONNX model for the entry's architecture."""
    if entry.architecture == "animeganv2":
        from atelier_dev.models import animegan

        def build_anime(weights: dict[str, np.ndarray] | None, seed: int) -> onnx.ModelProto:
            return animegan.build(weights, seed=seed, layout=entry.layout, trained=weights is not None)

        return build_anime
    if entry.architecture == "edsr":
        try:
            from atelier.inference.models import edsr
        except ImportError as exc:
            raise NotImplementedError(
                "the EDSR graph builder (atelier.inference.models.edsr) is not available"
            ) from exc

        def build_edsr(weights: dict[str, np.ndarray] | None, seed: int) -> onnx.ModelProto:
            model: onnx.ModelProto = edsr.build(
                scale=int(entry.param("scale")),
                n_resblocks=int(entry.param("n_resblocks")),
                n_feats=int(entry.param("n_feats")),
                res_scale=float(entry.param("res_scale")),
                weights=weights,
                seed=seed,
            )
            return model

        return build_edsr
    raise NotImplementedError(f"no graph builder for architecture {entry.architecture!r}")


def mark_trained(model: onnx.ModelProto, trained: bool) -> onnx.ModelProto:
    """Record in the model's metadata whether its weights are trained."""
    props = {p.key: p.value for p in model.metadata_props}
    props["trained"] = "true" if trained else "false"
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    return model


def convert(entry: ModelEntry, source: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Convert a downloaded file to ONNX (fp32, plus fp16 for GPU models); returns {precision: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if entry.format == "onnx":
        model = onnx.load(str(source))
    elif entry.format == "pytorch_state_dict":
        weights = read_state_dict(source)
        model = builder_for(entry)(weights, 0)
    else:
        raise ValueError(f"{entry.name}: format {entry.format!r} is built, not converted")
    mark_trained(model, entry.trained)
    onnx.checker.check_model(model)
    return save_precisions(model, entry.precisions, out_dir)


def save_precisions(model: onnx.ModelProto, precisions: tuple[str, ...], out_dir: Path) -> dict[str, Path]:
    """Write ``model`` as model.fp32.onnx (and model.fp16.onnx when asked) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for precision in precisions:
        target = out_dir / f"model.{precision}.onnx"
        data = (to_fp16(model) if precision == "fp16" else model).SerializeToString()
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        paths[precision] = target
    return paths


def run_graph(path: str | Path, layout: str, side: int = 64) -> tuple[int, ...]:
    """Load an ONNX file in ONNX Runtime and run it on a small input; returns the output shape."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    dims = [d if isinstance(d, int) else None for d in inp.shape]
    shape = [1, 3, side, side] if layout == "NCHW" else [1, side, side, 3]
    for i, d in enumerate(dims):
        if d is not None and i > 0:
            shape[i] = d
    x = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    (out,) = session.run(None, {inp.name: x})[:1]
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path}: the output holds non-finite values")
    return tuple(int(v) for v in out.shape)
