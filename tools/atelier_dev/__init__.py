"""Development tools, never shipped: the local stack, model builders and converters, the CLI, the demo.

``atelier`` is imported first: it sets OpenCV's decode limits, which OpenCV reads once, when it loads.
"""

import atelier  # noqa: F401
