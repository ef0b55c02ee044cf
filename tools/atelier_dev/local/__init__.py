"""The local stack: real servers on loopback, resources from template.yaml, an event dispatcher."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TypeVar

V = TypeVar("V")


@contextlib.contextmanager
def overlaid(target: MutableMapping[str, V], updates: Mapping[str, V]) -> Iterator[None]:
    """Set ``updates`` in ``target`` for the duration of a ``with`` block, then restore what was there."""
    saved = {key: target.get(key) for key in updates}
    target.update(updates)
    try:
        yield
    finally:
        for key, previous in saved.items():
            if previous is None:
                target.pop(key, None)
            else:
                target[key] = previous
