"""Entry points: each builds everything it needs (config, clients, adapters) in one place and serves one
kind of event: the style and anime Lambdas, the upload API, the dead-letter marker, the GPU worker."""

from collections.abc import Callable
from typing import Any

# A Lambda handler as the runtime calls it: the event and the context in, a JSON-able answer (or None) out.
Handler = Callable[[dict[str, Any], Any], Any]
