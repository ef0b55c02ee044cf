"""The options an upload may set per style, and the one reader of them in an object's metadata (AWS-free).

The upload API takes ``options`` keyed by style (``{"sketch": {"strength": 0.7}}``), checks them against
:data:`STYLE_OPTIONS` and pins them, as compact JSON, in the object's ``x-amz-meta-options``. A drop-in may
set an option as plain metadata of its own name (``aws s3 cp --metadata strength=0.8``); the per-style
options win over it. The handlers read both through :func:`style_options` (strict: an invalid option is
an error the render reports) or :func:`option_of` (lenient: anything unusable reads as absent).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from atelier.domain import keys
from atelier.imaging import styles
from atelier.inference import models

OPTIONS_METADATA = "options"  # x-amz-meta-options


class InvalidOption(ValueError):
    """An option no render can honour; the message says which and what it may be."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Choice:
    """An option that is one of a few values (a model name, an upscale factor)."""

    values: tuple[Any, ...]

    def check(self, label: str, value: Any) -> Any:
        """``value`` if it is one of the choices (never a bool), else InvalidOption."""
        if isinstance(value, bool) or value not in self.values:
            raise InvalidOption(f"{label} must be one of {', '.join(map(str, self.values))}, not {value!r}")
        return value

    def parse(self, label: str, text: str) -> Any:
        """The choice a metadata string names."""
        for value in self.values:
            if str(value) == text.strip():
                return value
        return self.check(label, text)


@dataclass(frozen=True)
class Range:
    """A number from ``low`` to ``high`` inclusive (an int or a float, never a bool, NaN or infinity)."""

    low: float
    high: float

    def check(self, label: str, value: Any) -> float:
        """``value`` as a float if it is a number in range, else InvalidOption."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not self.low <= value <= self.high
        ):
            raise InvalidOption(f"{label} must be a number from {self.low:g} to {self.high:g}, not {value!r}")
        return float(value)

    def parse(self, label: str, text: str) -> float:
        """The number a metadata string or a command-line argument gives."""
        try:
            return self.check(label, float(text.strip()))
        except ValueError:  # InvalidOption too; said with the text as given: 'strong', '1.5'
            raise InvalidOption(
                f"{label} must be a number from {self.low:g} to {self.high:g}, not {text!r}"
            ) from None


Option = Choice | Range

STRENGTH = Range(0.0, 1.0)  # every CPU style's ``strength``: 0 barely touches the photo, 1 is the full look
STYLE_OPTIONS: dict[str, dict[str, Option]] = {
    **{name: {"strength": STRENGTH} for name in styles.CPU_STYLES},
    "anime": {"model": Choice(tuple(m.name for m in models.load_manifest() if m.task == "anime"))},
    keys.UPSCALE: {"factor": Choice((2, 3, 4))},
}


Specs = Mapping[str, Mapping[str, Option]]  # style -> option name -> what it may be


def check(style: str, given: Any, specs: Specs = STYLE_OPTIONS) -> dict[str, Any]:
    """One style's options, each checked against its spec; InvalidOption says what is wrong."""
    if not isinstance(given, Mapping):
        raise InvalidOption(f"options of {style!r} must be an object")
    known = specs.get(style, {})
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in known:
            takes = ", ".join(known) or "no options"
            raise InvalidOption(f"style {style!r} has no option {name!r}; it takes {takes}")
        out[name] = known[name].check(f"{style}.{name}", value)
    return out


def read_options(metadata: Mapping[str, str]) -> dict[str, Any]:
    """An object's ``x-amz-meta-options``, parsed: {} when absent, InvalidOption when not a JSON object."""
    meta = {k.lower(): v for k, v in metadata.items()}
    raw = meta.get(OPTIONS_METADATA, "")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise InvalidOption(f"the metadata x-amz-meta-options is not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise InvalidOption("the metadata x-amz-meta-options must be a JSON object keyed by style")
    return parsed


def style_options(metadata: Mapping[str, str], style: str, specs: Specs = STYLE_OPTIONS) -> dict[str, Any]:
    """The options an object asks of ``style``, checked: ``x-amz-meta-options`` over plain metadata.

    Plain metadata counts for the options the style takes (``x-amz-meta-strength``); anything else in it
    is not an option. Raise InvalidOption with a message that names the metadata at fault.
    """
    out: dict[str, Any] = {}
    if style in (per_style := read_options(metadata)):
        try:
            out = check(style, per_style[style], specs)
        except InvalidOption as exc:
            raise InvalidOption(f"the metadata x-amz-meta-options: {exc.message}") from None
    meta = {k.lower(): v for k, v in metadata.items()}
    for name, spec in specs.get(style, {}).items():
        if name not in out and name in meta:
            out[name] = spec.parse(f"the metadata x-amz-meta-{name}", meta[name])
    return out


def option_of(metadata: Mapping[str, str], style: str, name: str) -> Any:
    """One raw value of ``x-amz-meta-options`` (``{style: {name: value}}``), or None; never raises."""
    try:
        given = read_options(metadata).get(style)
    except InvalidOption:
        return None
    return given.get(name) if isinstance(given, dict) else None


TITLES = {
    **{name: style.title for name, style in styles.STYLES.items()},
    "anime": "Anime",
    keys.UPSCALE: "Upscale",
}


def catalogue(accepted: Sequence[str], specs: Specs = STYLE_OPTIONS) -> list[dict[str, Any]]:
    """What ``GET /styles`` answers: each accepted style, its title and its options with what they may be."""
    trained = {m.name: m.trained for m in models.load_manifest()}
    out: list[dict[str, Any]] = []
    for name in accepted:
        described: dict[str, Any] = {}
        for option, spec in specs.get(name, {}).items():
            if isinstance(spec, Range):
                default = styles.STYLES[name].defaults.get(option) if name in styles.STYLES else None
                described[option] = {"min": spec.low, "max": spec.high, "default": default}
            else:
                choices = [
                    {"value": v, **({"trained": trained[v]} if v in trained else {})} for v in spec.values
                ]
                described[option] = {"choices": choices}
        out.append({"name": name, "title": TITLES.get(name, name), "options": described})
    return out
