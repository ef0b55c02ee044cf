"""The upload API and the web gallery on loopback: API Gateway's part, played locally.

``/api/<route>`` becomes an API Gateway HTTP API event (payload format 2.0) carrying a development identity
in ``requestContext.authorizer.jwt.claims`` and goes to the very handler of ``ApiFunction`` (imported by the
dispatcher with the function's environment); every other path serves ``web/``. Only the routes the
template declares for ``ApiFunction`` reach it, as on API Gateway. Like the JWT authorizer, the server
answers 401 to a request without a bearer token, but it does not verify the token: any token stands for
the development user (``dev-user``, or the ``X-Atelier-Dev-User`` header's value, to act as someone else).

Browsers post the file straight to SeaweedFS, cross-origin, as they post to S3: SeaweedFS applies a bucket's
CORS rules (PutBucketCors) to object requests and to POST uploads, so :func:`serve_api` gives the bucket the
template's own ``CorsConfiguration`` with this server's origin in place of ``WebOrigin``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from atelier.entrypoints import Handler
from atelier_dev.local.cfn import LocalTemplate
from atelier_dev.local.dispatcher import LambdaContext
from atelier_dev.local.stack import LOOPBACK, LocalStack, StackError

log = logging.getLogger(__name__)

API_FUNCTION = "ApiFunction"
API_PREFIX = "/api"
DEV_USER = "dev-user"
DEV_USER_HEADER = "X-Atelier-Dev-User"  # local only: act as another user (tests of ownership)
MAX_API_BODY = 1024 * 1024
_BEARER = re.compile(r"^Bearer\s+\S+$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Route:
    """One HttpApi route of the template: method and path template (``/images/{id}``)."""

    method: str
    path: str

    @property
    def pattern(self) -> re.Pattern[str]:
        """The path template as a regular expression."""
        parts = re.split(r"(\{[^}]+\})", self.path)
        body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{body}$")

    @property
    def key(self) -> str:
        """API Gateway's route key: ``GET /images/{id}``."""
        return f"{self.method} {self.path}"


def http_api_routes(template: LocalTemplate, function: str = API_FUNCTION) -> list[Route]:
    """The ``HttpApi`` events of a function in the template."""
    events = template.properties(function).get("Events") or {}
    routes = []
    for event in events.values():
        if event.get("Type") == "HttpApi":
            props = template.resolve(event.get("Properties") or {})
            routes.append(Route(str(props.get("Method", "ANY")).upper(), str(props.get("Path", "/$default"))))
    return routes


def http_api_event(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    claims: Mapping[str, Any],
    route_key: str,
    domain: str,
    source_ip: str = LOOPBACK,
    account: str = "000000000000",
) -> dict[str, Any]:
    """The event API Gateway's HTTP API sends a Lambda integration (payload format 2.0)."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    cookies = [c.strip() for c in lowered.pop("cookie", "").split(";") if c.strip()]
    params: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        name, value = unquote_plus(name), unquote_plus(value)
        params[name] = f"{params[name]},{value}" if name in params else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": account,
            "apiId": "local",
            "authorizer": {"jwt": {"claims": dict(claims), "scopes": None}},
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def dev_claims(sub: str, issuer: str) -> dict[str, Any]:
    """The claims of the development identity (what a JWT authorizer would pass on)."""
    now = int(time.time())
    return {
        "sub": sub,
        "iss": issuer,
        "aud": "atelier-local",
        "iat": now,
        "exp": now + 3600,
        "token_use": "id",
    }


class ApiServer(ThreadingHTTPServer):
    """The HTTP server: static files from ``web_dir`` and the API under ``/api``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        handler: Handler,
        context_factory: Callable[[], Any],
        routes: list[Route],
        web_dir: Path,
        dev_user: str,
        account: str,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.api_handler = handler
        self.context_factory = context_factory
        self.routes = routes
        self.web_dir = web_dir.resolve()
        self.dev_user = dev_user
        self.account = account
        # One Lambda container answers one request at a time; the handler's resolver relies on it.
        self.api_lock = threading.Lock()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def __getattr__(self, name: str) -> Any:
        # every method goes through _dispatch (API Gateway answers any method, 404 where no route is)
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    # --- plumbing -----------------------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, headers: Mapping[str, str], cookies: Sequence[str] = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_API_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == API_PREFIX or parts.path.startswith(API_PREFIX + "/"):
            self._api(parts.path[len(API_PREFIX) :] or "/", parts.query)
        elif self.command in ("GET", "HEAD"):
            self._static(parts.path)
        else:
            self._send(405, b"", {"Allow": "GET, HEAD"})

    # --- static files -------------------------------------------------------------------------------

    def _static(self, path: str) -> None:
        relative = unquote(path).lstrip("/") or "index.html"
        target = (self.server.web_dir / relative).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(self.server.web_dir) or not target.is_file():
            self._send(404, b"not found\n", {"Content-Type": "text/plain"})
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        self._send(200, target.read_bytes(), {"Content-Type": kind, "Cache-Control": "no-cache"})

    # --- the API ------------------------------------------------------------------------------------

    def _api(self, path: str, query: str) -> None:
        body = self._read_body()
        if body is None:
            self._json(413, {"message": "Request Entity Too Large"})
            return
        route = next(
            (r for r in self.server.routes if r.method in (self.command, "ANY") and r.pattern.match(path)),
            None,
        )
        if route is None:
            self._json(404, {"message": "Not Found"})  # what API Gateway answers for an undeclared route
            return
        if not _BEARER.match(self.headers.get("Authorization") or ""):
            self._json(401, {"message": "Unauthorized"})  # what the JWT authorizer answers without a token
            return
        sub = (self.headers.get(DEV_USER_HEADER) or "").strip() or self.server.dev_user
        host = self.headers.get("Host") or self.server.url.split("//", 1)[1]
        event = http_api_event(
            self.command,
            path,
            query,
            dict(self.headers.items()),
            body,
            claims=dev_claims(sub, f"{self.server.url}/dev-identity"),
            route_key=route.key,
            domain=host,
            source_ip=self.client_address[0],
            account=self.server.account,
        )
        try:
            with self.server.api_lock:
                result = self.server.api_handler(event, self.server.context_factory())
        except Exception:
            log.exception("the API handler raised")
            self._json(500, {"message": "Internal Server Error"})
            return
        self._lambda_response(result)

    def _lambda_response(self, result: Any) -> None:
        if not isinstance(result, dict) or "statusCode" not in result:
            # payload 2.0: a bare value is a 200 JSON body
            self._json(200, result)
            return
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ",".join(str(v) for v in values)
        headers.setdefault("Content-Type", "application/json")
        self._send(int(result["statusCode"]), body, headers, list(result.get("cookies") or []))


def bucket_cors_rules(
    template: LocalTemplate, origins: list[str], bucket: str = "PhotoBucket"
) -> list[dict[str, Any]]:
    """The bucket's ``CorsConfiguration`` from the template, as PutBucketCors takes it, for ``origins``."""
    props = template.properties(bucket)
    rules = ((props.get("CorsConfiguration") or {}).get("CorsRules")) or []
    resolved = template.resolve(rules) or []
    out = []
    for rule in resolved:
        converted: dict[str, Any] = {
            "AllowedMethods": list(rule["AllowedMethods"]),
            "AllowedOrigins": list(origins),
        }
        if rule.get("AllowedHeaders"):
            converted["AllowedHeaders"] = list(rule["AllowedHeaders"])
        if rule.get("ExposedHeaders"):
            converted["ExposeHeaders"] = list(rule["ExposedHeaders"])
        if rule.get("MaxAge") is not None:
            converted["MaxAgeSeconds"] = int(rule["MaxAge"])
        if rule.get("Id"):
            converted["ID"] = str(rule["Id"])
        out.append(converted)
    return out


def serve_api(
    stack: LocalStack,
    *,
    port: int = 0,
    web_dir: str | Path | None = None,
    dev_user: str = DEV_USER,
    handler: Handler | None = None,
) -> tuple[str, Callable[[], None]]:
    """Serve the gallery and the API of a running stack on loopback; return its URL and a stop function.

    The stack's dispatcher must be running: it imports ``ApiFunction``'s handler with the function's
    environment, the same way it imports the style handlers.
    """
    template = stack.template
    if template is None:
        raise StackError("the stack is not started")
    dispatcher = stack.dispatcher
    spec = dispatcher.functions[API_FUNCTION]
    api = handler or dispatcher.handler_for(API_FUNCTION)
    routes = http_api_routes(template)
    if not routes:
        raise StackError(f"{API_FUNCTION} declares no HttpApi routes in the template")
    folder = Path(web_dir) if web_dir is not None else stack.template_path.parent / "web"
    server = ApiServer(
        (LOOPBACK, port),
        handler=api,
        context_factory=lambda: LambdaContext(spec, str(uuid.uuid4())),
        routes=routes,
        web_dir=folder,
        dev_user=dev_user,
        account=stack.account or "000000000000",
    )
    url = server.url
    origins = [url, url.replace(LOOPBACK, "localhost")]
    rules = bucket_cors_rules(template, origins)
    if rules:
        stack.s3.put_bucket_cors(Bucket=stack.bucket, CORSConfiguration={"CORSRules": rules})
    thread = threading.Thread(target=server.serve_forever, name="atelier-api-server", daemon=True)
    thread.start()
    log.info("gallery and API on %s", url)
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return url, stop
