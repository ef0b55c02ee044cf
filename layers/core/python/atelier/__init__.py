"""Atelier: photo-to-art core. AWS-free at import.

OpenCV reads its decode limits once, when it is first loaded, so they are set here, before any
module of the package can import ``cv2``. The header checks in :mod:`atelier.imaging.probe` are the first line
of defence; these limits are the second.
"""

import os
import sys
import warnings

from atelier.config import read_limits
from atelier.domain.limits import Limits

__version__ = "0.1.0"

_LIMITS = read_limits()
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(_LIMITS.max_pixels)
os.environ["OPENCV_IO_MAX_IMAGE_WIDTH"] = str(_LIMITS.max_side)
os.environ["OPENCV_IO_MAX_IMAGE_HEIGHT"] = str(_LIMITS.max_side)
if "cv2" in sys.modules:  # pragma: no cover - depends on the importer
    warnings.warn(
        "cv2 was imported before atelier: OpenCV's decode limits are not in force; import atelier first",
        RuntimeWarning,
        stacklevel=2,
    )

__all__ = ["Limits", "__version__"]
