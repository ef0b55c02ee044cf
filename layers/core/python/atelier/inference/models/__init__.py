"""Model registry: the manifest of known models, the local cache folder and what is installed in it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from atelier.config import model_cache_dir

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
LAYOUTS = ("NCHW", "NHWC")
SHA256_STATUSES = ("pinned", "unpinned", "built")
FORMATS = ("pytorch_state_dict", "onnx", "dev")
REQUIRED_FIELDS = (
    "name",
    "architecture",
    "task",
    "format",
    "source_url",
    "sha256",
    "sha256_status",
    "sha256_prefix",
    "sha256_source",
    "licence",
    "layout",
    "channels",
    "value_range",
    "size_multiple",
    "default_working_size",
    "precisions",
    "device",
    "trained",
    "notes",
)
EDSR_FIELDS = ("scale", "n_resblocks", "n_feats", "res_scale", "receptive_field")
INFO_FILE = "info.json"


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry: where a model comes from, how it is pinned and how its tensors are laid out."""

    name: str
    architecture: str
    task: str
    format: str
    source_url: str | None
    sha256: str | None
    sha256_status: str
    sha256_prefix: str | None
    licence: str
    layout: str
    value_range: tuple[float, float]
    size_multiple: int
    default_working_size: int
    precisions: tuple[str, ...]
    device: str
    trained: bool
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelEntry:
        """Build an entry from its manifest dict, checking every field."""
        validate_entry(d)
        lo, hi = d["value_range"]
        return cls(
            name=d["name"],
            architecture=d["architecture"],
            task=d["task"],
            format=d["format"],
            source_url=d["source_url"],
            sha256=d["sha256"],
            sha256_status=d["sha256_status"],
            sha256_prefix=d["sha256_prefix"],
            licence=d["licence"],
            layout=d["layout"],
            value_range=(float(lo), float(hi)),
            size_multiple=int(d["size_multiple"]),
            default_working_size=int(d["default_working_size"]),
            precisions=tuple(d["precisions"]),
            device=d["device"],
            trained=bool(d["trained"]),
            raw=dict(d),
        )

    @property
    def pinned(self) -> bool:
        """True when the full SHA-256 of the published file is recorded."""
        return self.sha256_status == "pinned" and self.sha256 is not None

    @property
    def filename(self) -> str:
        """File name of the download (the last part of the source URL)."""
        if not self.source_url:
            return f"{self.name}.onnx"
        return self.source_url.rsplit("/", 1)[-1].split("?", 1)[0]

    def param(self, key: str) -> Any:
        """An architecture parameter of the entry (e.g. ``scale`` for EDSR)."""
        return self.raw[key]


def validate_entry(d: dict[str, Any]) -> None:
    """Raise ValueError if a manifest entry lacks a field or holds an invalid value."""
    name = d.get("name", "?")
    missing = [k for k in REQUIRED_FIELDS if k not in d]
    if d.get("architecture") == "edsr":
        missing += [k for k in EDSR_FIELDS if k not in d]
    if missing:
        raise ValueError(f"manifest entry {name}: missing {missing}")
    if d["layout"] not in LAYOUTS:
        raise ValueError(f"manifest entry {name}: layout {d['layout']!r} not in {LAYOUTS}")
    if d["format"] not in FORMATS:
        raise ValueError(f"manifest entry {name}: format {d['format']!r} not in {FORMATS}")
    if d["sha256_status"] not in SHA256_STATUSES:
        raise ValueError(f"manifest entry {name}: sha256_status {d['sha256_status']!r}")
    lo, hi = d["value_range"]
    if not float(lo) < float(hi):
        raise ValueError(f"manifest entry {name}: value_range {d['value_range']}")
    if int(d["size_multiple"]) < 1 or int(d["default_working_size"]) < 1:
        raise ValueError(f"manifest entry {name}: size_multiple and default_working_size must be positive")
    if d["sha256_status"] == "pinned" and not _is_hex(d["sha256"], 64):
        raise ValueError(f"manifest entry {name}: pinned without a 64-digit sha256")
    if d["sha256_status"] != "pinned" and d["sha256"] is not None:
        raise ValueError(f"manifest entry {name}: a sha256 is given but the status is {d['sha256_status']}")
    if d["sha256_prefix"] is not None and not _is_hex(d["sha256_prefix"], None):
        raise ValueError(f"manifest entry {name}: sha256_prefix must be hex")
    if (
        d["sha256"] is not None
        and d["sha256_prefix"] is not None
        and not d["sha256"].startswith(d["sha256_prefix"])
    ):
        raise ValueError(f"manifest entry {name}: sha256 does not start with its sha256_prefix")
    if d["format"] != "dev" and not str(d["source_url"]).startswith("https://"):
        raise ValueError(f"manifest entry {name}: source_url must be https")


def _is_hex(value: Any, length: int | None) -> bool:
    if not isinstance(value, str) or (length is not None and len(value) != length) or not value:
        return False
    return all(c in "0123456789abcdef" for c in value)


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[ModelEntry, ...]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    entries = tuple(ModelEntry.from_dict(d) for d in data["models"])
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError("manifest: model names are not unique")
    return entries


def load_manifest(path: str | Path | None = None) -> tuple[ModelEntry, ...]:
    """Every entry of the manifest (the packaged one unless ``path`` is given)."""
    return _load(str(path or MANIFEST_PATH))


def names() -> list[str]:
    """Names of all models in the manifest."""
    return [e.name for e in load_manifest()]


def get(name: str) -> ModelEntry:
    """The manifest entry called ``name``, or KeyError naming the known models."""
    for entry in load_manifest():
        if entry.name == name:
            return entry
    raise KeyError(f"unknown model {name!r}; known: {', '.join(names())}")


def cache_dir() -> Path:
    """The local model cache (``ATELIER_MODEL_DIR``, else ~/.cache/atelier/models)."""
    return model_cache_dir()


def model_dir(name: str, root: Path | None = None) -> Path:
    """Folder of one installed model inside the cache."""
    return (root or cache_dir()) / name


def installed_path(name: str, precision: str = "fp32", root: Path | None = None) -> Path:
    """Path of the installed ONNX file of ``name`` at ``precision`` (it may not exist)."""
    return model_dir(name, root) / f"model.{precision}.onnx"


def read_info(name: str, root: Path | None = None) -> dict[str, Any] | None:
    """The cache's record of an installed model (``trained``, hashes, source), or None."""
    path = model_dir(name, root) / INFO_FILE
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        info: dict[str, Any] = json.load(f)
    return info


def write_info(name: str, info: dict[str, Any], root: Path | None = None) -> Path:
    """Record what was installed for ``name`` (written atomically)."""
    folder = model_dir(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INFO_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (the one file hash of the package: downloads, installs, the Lambda's copy)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def untrained_notice(info: dict[str, Any] | None) -> str:
    """The line to show beside any output of a model whose weights are not trained ('' if trained)."""
    if info is not None and info.get("trained") is False:
        return "untrained weights (dev model): the output shows the code path, not a trained style"
    return ""


__all__ = [
    "MANIFEST_PATH",
    "ModelEntry",
    "cache_dir",
    "get",
    "installed_path",
    "load_manifest",
    "model_dir",
    "names",
    "read_info",
    "sha256_file",
    "untrained_notice",
    "validate_entry",
    "write_info",
]
