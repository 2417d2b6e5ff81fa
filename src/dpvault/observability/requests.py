"""HTTP request counters on the request hot path: a dict increment, no lock, no prometheus-client
call (its labelled counters take a lock and a label lookup per increment; the app runs requests on
one event loop, so plain integers are safe). ``/metrics`` reads a snapshot."""

from __future__ import annotations

METHODS = frozenset({"GET", "PUT", "PATCH", "POST", "DELETE", "HEAD"})
UNMATCHED = "(unmatched)"


class RequestCounter:
    """Requests and their total seconds, by (route template, method, status)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], list[float]] = {}

    def count(self, route: str | None, method: str, status: int, seconds: float) -> None:
        key = (route or UNMATCHED, method if method in METHODS else "OTHER", status)
        entry = self._counts.get(key)
        if entry is None:
            self._counts[key] = [1, seconds]
        else:
            entry[0] += 1
            entry[1] += seconds

    def snapshot(self) -> list[tuple[str, str, int, int, float]]:
        """(route, method, status, requests, seconds), sorted."""
        return sorted((r, m, s, int(v[0]), v[1]) for (r, m, s), v in list(self._counts.items()))
