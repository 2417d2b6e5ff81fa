"""What handlers and job handlers share: built once by ``Runtime.start`` (the composition root).

The protection core is not in here: the handlers and jobs that use it are given it explicitly."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dpvault.arm.http import Principal
from dpvault.clock import Clock
from dpvault.settings import Settings
from dpvault.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    clock: Clock
    # Wakes the in-process worker after a commit that enqueued work, so nothing waits for a poll.
    wake_worker: Callable[[], None]
    # Wakes the scheduler after a change to what is protected or when.
    wake_scheduler: Callable[..., None] = lambda at=None: None
    # Refuses a principal a subscription of another tenant (set by the app once tenants exist); for
    # routes whose subscription is in the body rather than the path.
    authorize: Callable[[Principal, str], Awaitable[None]] | None = None
    # Validates a bearer token ("Bearer …") like the Authorization header's (set by the app): for
    # the tokens of other tenants that approve critical operations (x-ms-authorization-auxiliary).
    verify_token: Callable[[str], Awaitable[Principal]] | None = None

    def now(self) -> float:
        """Business time (the manual clock when one is configured)."""
        return self.clock.time()

    @staticmethod
    def real_now() -> float:
        """Wall time, for queue mechanics: leases and retries must not depend on a manual clock."""
        return time.time()
