"""The core's two refusals: a photo that can never render (rejected) and a job that cannot finish (failed)."""

from __future__ import annotations

from typing import Literal

Reason = Literal["too_large_bytes", "too_many_pixels", "unsupported_format", "corrupt", "too_expensive"]
REASONS: tuple[Reason, ...] = (
    "too_large_bytes",
    "too_many_pixels",
    "unsupported_format",
    "corrupt",
    "too_expensive",
)


class ImageRejected(Exception):
    """An input that will never render, whatever the retry: the reason says why."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The reason and message, as recorded in a status item."""
        return {"reason": self.reason, "message": self.message}


class JobFailed(Exception):
    """A job that cannot finish whatever the retry, through no fault of the photo: the reason says why.

    Its status ends ``failed`` at once and it is not retried: a model that is not installed, a model with no
    pinned hash, an option no render can honour.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
