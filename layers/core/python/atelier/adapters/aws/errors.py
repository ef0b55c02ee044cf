"""Turn botocore's errors into the project's own: transient (retry) or not."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from atelier.ports import NotFound, StoreError, TransientStoreError

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "ResourceNotFoundException"}
_TRANSIENT = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionInProgressException",
}
_NETWORK = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


def translate(exc: Exception, what: str) -> StoreError:
    """The project's exception for a botocore error raised while doing ``what``."""
    if isinstance(exc, _NETWORK):
        return TransientStoreError(f"{what}: {exc}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND:
            return NotFound(f"{what}: {code}")
        if code in _TRANSIENT or (isinstance(status, int) and status >= 500):
            return TransientStoreError(f"{what}: {code or status}")
        return StoreError(f"{what}: {code} {exc}")
    return StoreError(f"{what}: {exc}")
