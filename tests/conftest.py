"""Shared test setup. ``atelier`` is imported first so OpenCV's decode limits are set before cv2 loads."""

import atelier  # noqa: F401
