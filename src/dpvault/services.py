"""What handlers and job handlers share: built once by ``create_app`` (the composition root)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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

    def now(self) -> float:
        return self.clock.now().timestamp()
