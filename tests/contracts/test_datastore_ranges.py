"""The Datastore contract's ranged reads (``get_range``), which vault format 2 reads chunks out of
packs with: run against every implementation through the contract suite's fixture."""

from __future__ import annotations

import asyncio
import os

import pytest

from dpvault.datastores import ObjectNotFoundError
from dpvault.datastores.base import put_bytes
from tests.contracts.test_datastore import Harness, harness

__all__ = ["harness"]  # the contract suite's fixture: every implementation


def test_ranged_reads_return_exactly_the_bytes_asked_for(harness: Harness) -> None:
    data = os.urandom(3 << 20)

    async def go() -> None:
        await put_bytes(harness.store, "v/packs/ab/abc.pack", data)
        for start, length in (
            (0, 10),
            (12345, 1 << 20),
            ((3 << 20) - 7, 7),
            ((3 << 20) - 7, 100),
            (0, 3 << 20),
        ):
            assert (
                await harness.store.get_range("v/packs/ab/abc.pack", start, length)
                == data[start : start + length]
            )
        assert await harness.store.get_range("v/packs/ab/abc.pack", 3 << 20, 5) == b""
        with pytest.raises(ObjectNotFoundError):
            await harness.store.get_range("v/packs/ab/none.pack", 0, 10)

    asyncio.run(go())
