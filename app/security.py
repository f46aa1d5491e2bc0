"""Protection against other websites: Host and Origin checks, and a request size limit.

A web page on another site can make the browser send requests to 127.0.0.1, either
directly (cross-site requests with a foreign ``Origin``) or after pointing its own domain
name at 127.0.0.1 (DNS rebinding, recognisable by a foreign ``Host``). This middleware:

- rejects every request whose ``Host`` is not one of the server's own names
  (localhost, 127.0.0.1, [::1], the bound host and any configured extra names), with
  any port, with 400;
- rejects state-changing requests (every method except GET, HEAD and OPTIONS) and all
  websocket handshakes whose ``Origin`` is present and is not the origin of the request
  itself (``http(s)://`` plus the ``Host`` header), with 403; a request without
  ``Origin`` comes from a non-browser client and passes;
- rejects request bodies larger than ``max_body_bytes`` with 413.

``SecurityHeadersMiddleware`` adds headers to every response that limit what a browser
does with it: ``X-Content-Type-Options: nosniff`` (downloads and JSON are never run as a
script or page), ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` (no other site
can frame a page and trick clicks on it), and on HTML pages a Content-Security-Policy that
allows scripts, styles, images and connections from this server only.
"""

import json
import logging
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_MAX_BODY_BYTES = 2 * 2**20

# Websocket close code for a policy violation (RFC 6455); the server answers the
# handshake with HTTP 403.
WS_POLICY_VIOLATION = 1008


class BodyTooLarge(Exception):
    pass


def host_name(host_header: str | None) -> str | None:
    """Return the lower-case host name of a Host header without port or brackets.

    Returns None for a missing or malformed header.
    """
    if not host_header:
        return None
    host = host_header.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return None
    return name or None


class LocalOriginMiddleware:
    """ASGI middleware applying the Host, Origin and body-size rules of this module."""

    def __init__(
        self, app: ASGIApp, host_names: set[str], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ):
        self.app = app
        self.host_names = {name.lower() for name in host_names}
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host_name(host) not in self.host_names:
            logger.warning("rejected a request for %s with Host header %r", scope["path"], host)
            await _reject(scope, send, 400, f"invalid Host header {host!r}")
            return
        origin = headers.get("origin")
        changes_state = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if changes_state and origin is not None and not _same_origin(origin, host):
            logger.warning("rejected a request for %s from origin %r", scope["path"], origin)
            await _reject(scope, send, 403, f"cross-origin request from {origin!r} rejected")
            return
        if scope["type"] == "http":
            await self._call_with_body_limit(scope, receive, send, headers)
        else:
            await self.app(scope, receive, send)

    async def _call_with_body_limit(self, scope, receive, send, headers) -> None:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reject(scope, send, 413, self._too_large_message(int(declared)))
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await _reject(scope, send, 413, self._too_large_message(received))

    def _too_large_message(self, size: int) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes"


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin.strip().lower())
    return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


async def _reject(scope: Scope, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": detail})
        return
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Plotly.js and Swagger UI add inline <style> elements, hence 'unsafe-inline' for styles
# only. Websocket URLs of the page's own host are listed explicitly because 'self' matches
# ws: URLs only from CSP Level 3 on, and browsers that follow Level 2 need them. IPv6
# literals cannot be written in a CSP source, so a page served on [::1] relies on 'self'.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'{websockets}; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-:")


def content_security_policy(host_header: str | None) -> str:
    """Return the Content-Security-Policy of an HTML page served for ``host_header``."""
    host = (host_header or "").strip().lower()
    websockets = ""
    if host_name(host) is not None and set(host) <= _HOST_CHARACTERS:
        websockets = f" ws://{host} wss://{host}"
    return CONTENT_SECURITY_POLICY.format(websockets=websockets)


class SecurityHeadersMiddleware:
    """ASGI middleware adding the response headers described in this module's docstring."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    host = Headers(scope=scope).get("host")
                    headers.setdefault("Content-Security-Policy", content_security_policy(host))
            await send(message)

        await self.app(scope, receive, send_with_headers)


_REJECTION_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_REJECTIONS = {
    "400": "Invalid Host header, or a request body that cannot be decoded.",
    "403": "Cross-origin request rejected.",
    "413": "Request body too large.",
}


def document_rejections(app: FastAPI) -> None:
    """Add the rejections of ``LocalOriginMiddleware`` to every operation of the OpenAPI schema.

    Any request can get 400 or 413, and a state-changing one also 403. FastAPI itself also
    returns 400 for a body that is not valid UTF-8.
    """
    build_schema = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build_schema()
        for methods in schema.get("paths", {}).values():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                for status, description in _REJECTIONS.items():
                    if status == "403" and method.upper() in SAFE_METHODS:
                        continue
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": _REJECTION_SCHEMA}},
                        },
                    )
        return schema

    app.openapi = openapi
