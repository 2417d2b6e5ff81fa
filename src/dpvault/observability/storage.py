"""How much a vault stores: the logical bytes of its recovery points (their archives' sizes, from
the state database) and, where the vault format knows it, the physical bytes they take after
deduplication.

The hook: vault format 1 stores every archive whole, so physical == logical and no ratio is shown.
A format that deduplicates (format 2) hands :class:`Storage` a :class:`PhysicalBytes` source; the
dashboard and ``/metrics`` then show physical bytes and the ratio logical / physical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class PhysicalBytes(Protocol):
    async def physical_bytes(self, vault_key: str) -> int | None:
        """Bytes the vault's objects take in the datastore after deduplication; None if unknown."""
        ...


@dataclass(frozen=True)
class Usage:
    logical: int
    physical: int | None = None

    @property
    def dedup_ratio(self) -> float | None:
        if self.physical is None or self.physical <= 0:
            return None
        return self.logical / self.physical


class StoredBytes:
    """Format 2's physical bytes: the sizes of the vault's packs, from the pack index in the state
    database (no listing of the object store per scrape). Manifests and the wrapped data key, a few
    KiB per point, are not counted."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def physical_bytes(self, vault_key: str) -> int | None:
        async with self.store.read() as tx:
            return await tx.vault_pack_bytes(vault_key)


class Storage:
    def __init__(self, source: PhysicalBytes | None = None) -> None:
        self.source = source

    async def usage(self, vault_key: str, logical: int) -> Usage:
        physical = await self.source.physical_bytes(vault_key) if self.source is not None else None
        return Usage(logical, physical)
