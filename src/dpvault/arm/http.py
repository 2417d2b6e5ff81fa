"""The request as handlers see it, and the responses they return.

Handlers get a :class:`Call`: decoded path parameters, the query (names case-insensitive), the
caller's identity, and the body read under ARM's 4 MB limit. They return a :class:`Reply`; the app
adds the ARM headers every response carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from dpvault import errors

MAX_BODY = 4 * 1024 * 1024
_json_encoder = msgspec.json.Encoder()
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def encode(value: Any) -> bytes:
    return _json_encoder.encode(value)


JSON = "application/json; charset=utf-8"


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # ARM answers JSON; the operator's routes (/metrics, the dashboard) answer text and HTML.
    content_type: str = JSON

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, value if isinstance(value, bytes) else encode(value), headers or {})

    @classmethod
    def empty(cls, status: int, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, None, headers or {})


@dataclass(slots=True)
class Principal:
    """Who is calling, from the validated token."""

    subject: str
    display: str
    kind: str  # systemData createdByType: User | Application
    tenant: str
    claims: dict[str, Any]


class Call:
    """One ARM request, after routing."""

    __slots__ = (
        "_body",
        "_query",
        "_receive",
        "base_url",
        "headers",
        "method",
        "params",
        "path",
        "principal",
        "query_string",
        "request_id",
        "route",
    )

    def __init__(
        self,
        *,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        base_url: str,
        receive: Any,
        request_id: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.base_url = base_url
        self._receive = receive
        self._body: bytes | None = None
        self._query: dict[str, str] | None = None
        self.params: dict[str, str] = {}
        self.principal: Principal | None = None
        self.request_id = request_id
        self.route: str | None = None  # the matched route's template (for metrics), once routed

    @property
    def query(self) -> dict[str, str]:
        """Query parameters by lower-cased name (ARM treats names case-insensitively); first wins."""
        if self._query is None:
            parsed: dict[str, str] = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                parsed.setdefault(name.lower(), value)
            self._query = parsed
        return self._query

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version") or None

    async def body(self) -> bytes:
        """The raw body, refused above 4 MB before it is all read."""
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
            raise _too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                # The client went (or the server cut a stalled body off) before the body's end: a
                # partial body must never be acted on, even if it happens to parse.
                raise errors.bad_request(
                    "The request body ended before its Content-Length.", code="IncompleteRequestBody"
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise _too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def json_body(self, *, required: bool = True) -> bytes | None:
        """The body of a write, checked to be JSON by Content-Type; None when absent and optional."""
        body = await self.body()
        if not body.strip():
            if required:
                raise errors.bad_request("The request content is required and must be a JSON object.")
            return None
        content_type = self.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in ("application/json", "text/json") and not media.endswith("+json"):
            shown = media or "(none)"
            raise errors.ArmError(
                415,
                "UnsupportedMediaType",
                f"The content media type '{shown}' is not supported. Only 'application/json' is supported.",
            )
        return body


def _too_large() -> errors.ArmError:
    return errors.ArmError(
        413, "RequestContentTooLarge", "The request content size exceeds the maximum size of 4 MB."
    )


def base_url_for(scheme: str, host_header: str | None, fallback: str) -> str:
    """The scheme and host the client used, so polling URLs come back to the same place.
    A Host header that is not a plain host[:port] is ignored (it would end up in Location headers)."""
    if host_header and _HOST.match(host_header):
        return f"{scheme}://{host_header}"
    return fallback
