"""Which engine backs up which datasource type. The only place a type is mapped to an engine."""

from __future__ import annotations

from collections.abc import Iterable

from dpvault.engines.base import Engine
from dpvault.types import canonical_datasource_type


class Engines:
    def __init__(self, engines: Iterable[Engine]) -> None:
        self._by_type: dict[str, Engine] = {}
        for engine in engines:
            for kind in engine.datasource_types:
                if kind in self._by_type:
                    raise ValueError(f"datasource type {kind!r} has two engines")
                self._by_type[kind] = engine

    def for_type(self, datasource_type: str | None) -> Engine | None:
        """The engine for a datasource type (any spelling ``canonical_datasource_type`` equates), or None."""
        return self._by_type.get(canonical_datasource_type(datasource_type or ""))

    @property
    def types(self) -> list[str]:
        return sorted(self._by_type)
