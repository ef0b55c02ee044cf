"""moto's DynamoDB made as strict as DynamoDB about concurrent requests: one request at a time.

DynamoDB's transactions are serializable. moto's ``transact_write_items`` is not isolated: it snapshots
the tables, applies the items one by one and, when a condition fails, puts the snapshot back, erasing
whatever another request wrote in the meantime (two writers of one pHash could both lose their items
while one of them was told it had won). Serializing every DynamoDB operation of the backend removes the
window. Run the server as ``python -m atelier_dev.local.strict_moto`` (the arguments of ``moto.server``) or
call ``install()`` before starting ``ThreadedMotoServer`` in this process.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

# Every operation the server's DynamoDB handler can reach that reads or writes items.
OPERATIONS = (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "batch_get_item",
    "batch_write_item",
    "transact_get_items",
    "transact_write_items",
    "execute_statement",
    "execute_transaction",
    "batch_execute_statement",
)
LOCK = threading.RLock()  # re-entrant: a transaction calls put_item and update_item itself


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return method(*args, **kwargs)

    run.__atelier_serialized__ = True  # type: ignore[attr-defined]
    return run


def install() -> None:
    """Serialize moto's DynamoDB backend in this process (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in OPERATIONS:
        method = getattr(DynamoDBBackend, name, None)
        if method is not None and not getattr(method, "__atelier_serialized__", False):
            setattr(DynamoDBBackend, name, _serialized(method))


def main() -> None:
    """``moto.server``'s command line, with the backend serialized first."""
    install()
    from moto.server import main as moto_main

    moto_main()


if __name__ == "__main__":
    main()
