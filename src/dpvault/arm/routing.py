"""ARM routing: literal segments match case-insensitively (ARM-1), names are percent-decoded per
segment from the raw path (so an encoded ``/`` never splits a name), and a known path with an
unknown method is a 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

from dpvault import errors
from dpvault.arm.http import Call, Reply

Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: str
    methods: dict[str, Handler]
    segments: tuple[tuple[bool, str], ...]  # (is_param, literal-lowercased or param name)
    # False only for what clients call before they have a token (metadata, OpenID discovery, token endpoint).
    auth: bool = True
    # The index of a ``{*name}`` segment (one or more path segments), if the pattern has one.
    greedy: int | None = None

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return self._match_greedy(parts) if self.greedy is not None else None
        params: dict[str, str] = {}
        for part, (is_param, value) in zip(parts, self.segments, strict=True):
            if is_param:
                if value.startswith("*"):
                    value = value[1:]
                params[value] = part
            elif part.lower() != value:
                return None
        return params

    def _match_greedy(self, parts: list[str]) -> dict[str, str] | None:
        """``{*name}`` takes what the literal segments around it leave (an ARM resource id that is
        itself a path: extension resources such as ``/{resourceId}/providers/…``)."""
        n = self.greedy
        assert n is not None
        tail = len(self.segments) - n - 1
        if len(parts) < len(self.segments):
            return None
        head = self.match(parts[:n] + ["-"] + (parts[len(parts) - tail :] if tail else []))
        if head is None:
            return None
        head[self.segments[n][1][1:]] = "/".join(parts[n : len(parts) - tail])
        return head


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(
        self,
        pattern: str,
        methods: dict[str, Handler],
        *,
        auth: bool = True,
    ) -> None:
        segments = []
        for seg in pattern.strip("/").split("/"):
            if seg.startswith("{") and seg.endswith("}"):
                segments.append((True, seg[1:-1]))
            else:
                segments.append((False, seg.lower()))
        greedy = next((n for n, (is_param, v) in enumerate(segments) if is_param and v.startswith("*")), None)
        self._routes.append(Route(pattern, methods, tuple(segments), auth, greedy))

    def resolve(self, method: str, parts: list[str]) -> tuple[Route, Handler, dict[str, str]]:
        allowed: set[str] = set()
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            handler = route.methods.get(method)
            if handler is None and method == "HEAD":
                handler = route.methods.get("GET")
            if handler is not None:
                return route, handler, params
            allowed.update(route.methods)
        if allowed:
            raise errors.ArmError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{method}'.",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        raise errors.ArmError(
            404,
            "NotFound",
            "No HTTP resource was found that matches the request URI. Check the path and the resource type.",
        )


def split_path(raw_path: bytes) -> list[str]:
    """Decoded segments of a raw request path; bad percent-encoding or UTF-8 is a 400. Empty
    segments are dropped, as ARM collapses repeated slashes: clients that join a base URL ending in
    ``/`` with a path starting with ``/`` send ``//metadata/endpoints`` (az cloud register)."""
    text = raw_path.decode("latin-1")
    if not text.startswith("/"):
        raise errors.bad_request("The request path must start with '/'.", code="InvalidRequestUri")
    parts = [p for p in text[1:].split("/") if p] or [""]
    try:
        return [unquote(p, encoding="utf-8", errors="strict") for p in parts]
    except UnicodeDecodeError:
        raise errors.bad_request(
            "The request path is not valid percent-encoded UTF-8.", code="InvalidRequestUri"
        ) from None
