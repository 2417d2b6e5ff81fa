"""Health probes for orchestrators: ``/healthz`` (the process answers) and ``/readyz`` (it can do
its work: the state database answers a trivial query and the vault datastore answers a ``stat``,
each within a short timeout).

Both are unauthenticated, as orchestrators' probes send no tokens (Kubernetes httpGet probes carry
fixed headers, and a bearer token expires); they say nothing but ok or which check failed, with
the exception's type (never a host, a URL or a name).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dpvault.datastores import LocalDatastore
from dpvault.datastores.base import Datastore
from dpvault.store import Store, stats

PROBE_KEY = "dpvault-readyz-probe"  # a valid key that no recovery point uses


class Probes:
    def __init__(self, store: Store, datastore: Datastore, *, timeout: float = 3.0) -> None:
        self.store = store
        self.datastore = datastore
        self.timeout = timeout

    async def ready(self) -> tuple[bool, dict[str, str]]:
        checks = await asyncio.gather(self._check(self._state()), self._check(self._vault()))
        result = {"stateDatabase": checks[0], "vaultStore": checks[1]}
        return all(v == "ok" for v in checks), result

    async def _check(self, probe: Any) -> str:
        try:
            await asyncio.wait_for(probe, self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:
            return f"failed ({type(exc).__name__})"
        return "ok"

    async def _state(self) -> None:
        await stats.ping(self.store)

    async def _vault(self) -> None:
        if isinstance(self.datastore, LocalDatastore):
            # A stat of a missing key answers None even where the directory is gone (an unmounted
            # share): the root itself must be a directory dpvault may write to.
            root = self.datastore.root
            usable = await asyncio.to_thread(lambda: root.is_dir() and os.access(root, os.W_OK | os.X_OK))
            if not usable:
                raise NotADirectoryError("the vault store directory is missing or not writable")
        await self.datastore.stat(PROBE_KEY)
