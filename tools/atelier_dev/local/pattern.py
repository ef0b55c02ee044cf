"""EventBridge event pattern matching, as documented for rules."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_MISSING = object()


class PatternError(ValueError):
    """An event pattern EventBridge would reject."""


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` matches ``pattern`` (every key of the pattern, recursively)."""
    if not isinstance(pattern, Mapping):
        raise PatternError("an event pattern must be an object")
    return _match_object(pattern, event)


def _match_object(pattern: Mapping[str, Any], event: Any) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not isinstance(expected, list) or not expected:
                raise PatternError("$or takes a non-empty array of patterns")
            if not any(_match_object(alt, event) for alt in expected):
                return False
            continue
        actual = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            if not isinstance(actual, Mapping):
                return False
            if not _match_object(expected, actual):
                return False
        elif isinstance(expected, list):
            if not _match_field(expected, actual):
                return False
        else:
            raise PatternError(f"pattern values must be arrays or objects, got {expected!r} at {key!r}")
    return True


def _match_field(matchers: list[Any], actual: Any) -> bool:
    if not matchers:
        raise PatternError("an empty array matches nothing and is refused")
    if actual is _MISSING:
        return any(_is_exists(m) and m["exists"] is False for m in matchers)
    values = actual if isinstance(actual, list) else [actual]
    for matcher in matchers:
        if _is_exists(matcher):
            if matcher["exists"] is True and values and not isinstance(actual, Mapping):
                return True
            continue
        if any(_match_value(matcher, v) for v in values):
            return True
    return False


def _is_exists(matcher: Any) -> bool:
    return isinstance(matcher, Mapping) and set(matcher) == {"exists"}


def _match_value(matcher: Any, value: Any) -> bool:
    if not isinstance(matcher, Mapping):
        return _equal(matcher, value)
    if len(matcher) != 1:
        raise PatternError(f"a content filter takes exactly one operator: {matcher!r}")
    ((op, arg),) = matcher.items()
    if op == "prefix":
        return _string_op(arg, value, lambda a, v: v.startswith(a))
    if op == "suffix":
        return _string_op(arg, value, lambda a, v: v.endswith(a))
    if op == "equals-ignore-case":
        return isinstance(value, str) and isinstance(arg, str) and value.casefold() == arg.casefold()
    if op == "wildcard":
        return isinstance(value, str) and _wildcard(arg).fullmatch(value) is not None
    if op == "anything-but":
        return _anything_but(arg, value)
    if op == "numeric":
        return _numeric(arg, value)
    if op == "cidr":
        return _cidr(arg, value)
    raise PatternError(f"unknown content filter {op!r}")


def _equal(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return type(expected) is type(value) and expected == value
    if isinstance(expected, (int, float)) and isinstance(value, (int, float)):
        return float(expected) == float(value)
    if expected is None:
        return value is None
    return isinstance(value, type(expected)) and expected == value


def _string_op(arg: Any, value: Any, test: Any) -> bool:
    if not isinstance(value, str):
        return False
    if isinstance(arg, Mapping) and set(arg) == {"equals-ignore-case"}:
        return bool(test(str(arg["equals-ignore-case"]).casefold(), value.casefold()))
    if not isinstance(arg, str):
        raise PatternError(f"prefix/suffix take a string, got {arg!r}")
    return bool(test(arg, value))


@lru_cache(maxsize=256)
def _wildcard(text: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "*\\":
            parts.append(re.escape(text[i + 1]))
            i += 2
            continue
        parts.append(".*" if ch == "*" else re.escape(ch))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _anything_but(arg: Any, value: Any) -> bool:
    if isinstance(arg, Mapping):
        if len(arg) != 1:
            raise PatternError(f"anything-but takes one operator: {arg!r}")
        ((op, inner),) = arg.items()
        if op not in ("prefix", "suffix", "wildcard", "equals-ignore-case"):
            raise PatternError(f"anything-but does not take {op!r}")
        if not isinstance(value, str):
            return False
        options = inner if isinstance(inner, list) else [inner]
        return not any(_match_value({op: o}, value) for o in options)
    options = arg if isinstance(arg, list) else [arg]
    return not any(_equal(o, value) for o in options)


def _numeric(arg: Any, value: Any) -> bool:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise PatternError(f"numeric takes [op, n] or [op, n, op, n], got {arg!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise PatternError(f"numeric bounds must be numbers, got {bound!r}")
        ok = {
            "=": value == bound,
            "<": value < bound,
            "<=": value <= bound,
            ">": value > bound,
            ">=": value >= bound,
        }.get(op)
        if ok is None:
            raise PatternError(f"unknown numeric operator {op!r}")
        if not ok:
            return False
    return True


def _cidr(arg: Any, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(str(arg), strict=False)
    except ValueError:
        return False
