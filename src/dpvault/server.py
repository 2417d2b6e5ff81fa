"""The HTTP server under the app: uvicorn's httptools protocol with bounded resources per connection.

uvicorn (0.54) bounds none of this for httptools: ``h11_max_incomplete_event_size`` is h11-only;
``limit_concurrency`` answers a plain-text 503 only once a request's headers are in; the keep-alive
timeout starts after a first response, so a connection that never sends a request stays open; a TLS
handshake may take asyncio's 60 s; httptools buffers a header line of any length; a body may trickle
in forever. So :class:`LimitedHttpToolsProtocol` (uvicorn's protocol with a few callbacks extended)
caps the request head and URL, times out the head and a stalled or too slow body, refuses
connections past a cap, and answers all of it, and requests the parser refuses, with CloudErrors;
:func:`new_event_loop` gives uvloop's servers a TLS handshake timeout. Every refusal closes the
connection (after a short linger, so the client can read the answer before the socket goes).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import httptools
import msgspec
import structlog
import uvloop
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from dpvault.errors import ArmError
from dpvault.settings import BODY_RATE_GRACE, HttpLimits

log = structlog.get_logger("dpvault.http")

# The TLS handshake timeout travels to uvicorn's worker processes in the environment (the loop
# factory is named by an import string and takes no arguments).
HANDSHAKE_ENV = "DPVAULT_TLS_HANDSHAKE_TIMEOUT"
BODY_CHECK_EVERY = 1.0
# How long a refused connection stays open, reading nothing, so the client reads the answer before
# the close (closing with unread input resets the connection and may destroy the answer in flight).
LINGER = 1.0


class _Refusal(Exception):  # noqa: N818 - not an error of dpvault's: a parser callback's way out
    """Raised in a parser callback to stop the request with a CloudError."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, headers: tuple[bytes, ...] = ()) -> bytes:
    """A whole HTTP/1.1 CloudError response that closes the connection."""
    body = msgspec.json.encode(ArmError(status, code, message).body())
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-ms-request-id: " + str(uuid.uuid4()).encode() + b"\r\n",
            *headers,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


_last_logged: dict[str, float] = {}


def _log_refusal(code: str, **fields: Any) -> None:
    """At most one line a second per kind: an attack must not flood the log."""
    now = time.monotonic()
    if now - _last_logged.get(code, 0.0) >= 1.0:
        _last_logged[code] = now
        log.warning("request refused", code=code, **fields)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded by :class:`HttpLimits`."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0  # of the head being read (approximate across pipelined requests)
        self._url_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_since = 0.0  # when the body's rate window began
        self._body_bytes = 0  # received in that window
        self._body_seen = 0  # ... as of the last look
        self._body_last = 0.0  # when body bytes were last seen arriving
        self._closing = False  # refused: input is dropped until the linger ends

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            cap = self.limits.max_connections
            _log_refusal("TooManyConnections", limit=cap)
            self._refuse(
                503,
                "TooManyConnections",
                f"The server has its maximum of {cap} open connections; retry shortly.",
                (b"retry-after: 1\r\n",),
            )
            return
        super().connection_made(transport)
        # A connection that sends nothing is closed when a request head would have timed out.
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- input ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._unset_keepalive_if_required()
        if not self._in_head:  # a body (or what follows it in the same read)
            self._body_bytes += len(data)
            if not self._feed(data):
                return
        elif self._head_bytes + len(data) <= self.limits.max_head_bytes:  # the usual case: one read
            self._head_bytes += len(data)
            if not self._feed(data):
                return
        elif not self._feed_capped(data):
            return
        if self._in_head:
            if self._head_bytes and self._head_timer is None:  # a head has begun, not ended
                self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        elif self._body_timer is None:  # a body has begun, not ended
            self._body_since = self._body_last = self.loop.time()
            self._body_bytes = self._body_seen = 0
            self._body_timer = self.loop.call_later(BODY_CHECK_EVERY, self._check_body)

    def _feed_capped(self, data: bytes) -> bool:
        """Feed ``data`` no further into a head than the cap allows; refuse a head past it."""
        limit = self.limits.max_head_bytes
        while data:
            if self._in_head:
                room = limit - self._head_bytes
                if room <= 0:
                    _log_refusal("RequestHeaderFieldsTooLarge", limit=limit)
                    self._refuse(
                        431,
                        "RequestHeaderFieldsTooLarge",
                        f"The request line and headers exceed the limit of {limit} bytes.",
                    )
                    return False
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
                self._body_bytes += len(piece)
            if not self._feed(piece):
                return False
        return True

    def _feed(self, piece: bytes) -> bool:
        """uvicorn's parsing of one piece; False once the connection is done with."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refusal):
                _log_refusal(refusal.code)
                self._refuse(refusal.status, refusal.code, refusal.message)
            else:
                self.send_400_response(str(exc) or "Invalid HTTP request received.")
            return False
        return not self._closing and not self.transport.is_closing()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a malformed request line, an unknown method) as a CloudError."""
        _log_refusal("InvalidHttpRequest", reason=msg[:100])
        self._refuse(400, "InvalidHttpRequest", f"The request is not valid HTTP/1.1: {msg.rstrip('.')}.")

    # -- parser callbacks ----------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            raise _Refusal(
                414,
                "RequestUrlTooLong",
                f"The request URL exceeds the limit of {self.limits.max_url_bytes} bytes.",
            )
        super().on_url(url)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._url_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # -- timeouts ------------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._closing or self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # still answering the previous request (a pipelined head waits meanwhile)
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
            return
        if not self._head_bytes:  # nothing sent at all: just close
            self.transport.close()
            return
        timeout = self.limits.header_timeout
        _log_refusal("RequestTimeout", part="head")
        self._refuse(408, "RequestTimeout", f"The request headers did not arrive within {timeout:g} seconds.")

    def _check_body(self) -> None:
        self._body_timer = None
        if self._in_head or self._closing or self.transport.is_closing():
            return
        now = self.loop.time()
        limits = self.limits
        if self._body_bytes != self._body_seen:  # bytes arrived since the last look
            self._body_last = now
        if self.flow.read_paused:  # the app is not reading: the wait is not the client's
            self._body_since = self._body_last = now
            self._body_bytes = 0
        elif now - self._body_last >= limits.body_timeout:
            _log_refusal("IncompleteRequestBody")
            self._refuse(
                400,
                "IncompleteRequestBody",
                f"The request body stopped before its end (its Content-Length or final chunk): nothing "
                f"arrived for {limits.body_timeout:g} seconds.",
            )
            return
        elif now - self._body_since >= BODY_RATE_GRACE and self._body_bytes < limits.min_body_rate * (
            now - self._body_since
        ):
            _log_refusal("RequestTimeout", part="body")
            self._refuse(
                408,
                "RequestTimeout",
                f"The request body arrived slower than {limits.min_body_rate} bytes per second.",
            )
            return
        self._body_seen = self._body_bytes
        self._body_timer = self.loop.call_later(BODY_CHECK_EVERY, self._check_body)

    # -- refusing ------------------------------------------------------------------------------

    def _refuse(self, status: int, code: str, message: str, headers: tuple[bytes, ...] = ()) -> None:
        """Answer with a CloudError (unless the request was answered already), read no more, and
        close after the linger. The app's request, if one runs, sees a disconnect."""
        self._closing = True
        self._cancel_timers()
        cycle = self.cycle
        answered = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # its reads end; its response, if any, is dropped
            cycle.message_event.set()
        if not answered:
            self.transport.write(error_response(status, code, message, headers))
        self.transport.pause_reading()
        self.loop.call_later(LINGER, self.transport.close)


class _Loop(uvloop.Loop):  # type: ignore[misc]
    """uvloop, whose TLS servers time handshakes out (uvicorn passes no ssl_handshake_timeout)."""

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None and kwargs.get("ssl_handshake_timeout") is None:
            kwargs["ssl_handshake_timeout"] = float(os.environ.get(HANDSHAKE_ENV, HttpLimits.header_timeout))
        return await super().create_server(*args, **kwargs)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (``loop="dpvault.server:new_event_loop"``)."""
    return _Loop()
