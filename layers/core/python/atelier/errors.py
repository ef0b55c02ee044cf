"""The one rejection type of the core, and the reason codes it carries."""

from __future__ import annotations

from typing import Literal

Reason = Literal["too_large_bytes", "too_many_pixels", "unsupported_format", "corrupt", "invalid_option"]
REASONS: tuple[Reason, ...] = (
    "too_large_bytes",
    "too_many_pixels",
    "unsupported_format",
    "corrupt",
    "invalid_option",  # the upload asks for an option no render can honour (a strength of 1.5)
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
