"""The CPU styles: each a function from an 8-bit BGR image to an 8-bit image of the same size."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atelier.imaging.styles import oil, pencil, sketch, watercolor


@dataclass(frozen=True)
class Style:
    """A named rendering with its default parameters and a version bumped whenever output changes."""

    name: str
    version: str
    render_fn: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""

    def params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults merged with overrides; an unknown parameter is an error, not a silent no-op."""
        merged = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                raise ValueError(
                    f"style {self.name!r} has no parameter {key!r}; it has {sorted(self.defaults)}"
                )
            merged[key] = type(self.defaults[key])(value)
        strength = merged.get("strength")
        if strength is not None and not 0.0 <= strength <= 1.0:
            raise ValueError(f"style {self.name!r}: strength must be between 0 and 1, not {strength!r}")
        return merged

    def render(self, bgr: np.ndarray, **overrides: Any) -> np.ndarray:
        """Render ``bgr`` (H x W x 3, uint8) in this style."""
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"styles take an H x W x 3 uint8 image, got {bgr.shape} {bgr.dtype}")
        return self.render_fn(bgr, **self.params(overrides))

    def fingerprint(self, overrides: Mapping[str, Any] | None = None) -> str:
        """A short digest of name, version and parameters: a change to any of them is a new render."""
        blob = json.dumps([self.name, self.version, self.params(overrides)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("sketch", sketch.VERSION, sketch.render, sketch.DEFAULTS, "Graphite sketch"),
        Style("pencil", pencil.VERSION, pencil.render, pencil.DEFAULTS, "Colour pencil"),
        Style("oil", oil.VERSION, oil.render, oil.DEFAULTS, "Oil painting"),
        Style("watercolor", watercolor.VERSION, watercolor.render, watercolor.DEFAULTS, "Watercolour"),
    )
}
CPU_STYLES: tuple[str, ...] = tuple(STYLES)


def get(name: str) -> Style:
    """Look a style up by name, with an error that lists the known ones."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; choose from {', '.join(STYLES)}") from None
