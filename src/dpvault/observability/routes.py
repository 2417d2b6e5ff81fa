"""The operator routes: ``GET /metrics`` (bearer token; see ``metrics.py`` for who sees what),
``GET /healthz`` and ``GET /readyz`` (no token; see ``probes.py``)."""

from __future__ import annotations

from dpvault.arm.http import Call, Reply
from dpvault.arm.routing import Router
from dpvault.observability.metrics import CONTENT_TYPE, Metrics
from dpvault.observability.probes import Probes


class ObservabilityRoutes:
    def __init__(self, metrics: Metrics, probes: Probes) -> None:
        self.metrics = metrics
        self.probes = probes

    async def scrape(self, call: Call) -> Reply:
        assert call.principal is not None
        return Reply(200, await self.metrics.render(call.principal), content_type=CONTENT_TYPE)

    async def healthz(self, call: Call) -> Reply:
        return Reply.json(200, {"status": "ok"})

    async def readyz(self, call: Call) -> Reply:
        ready, checks = await self.probes.ready()
        return Reply.json(
            200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks}
        )

    def add_to(self, router: Router) -> None:
        router.add("/metrics", {"GET": self.scrape})
        router.add("/healthz", {"GET": self.healthz}, auth=False)
        router.add("/readyz", {"GET": self.readyz}, auth=False)
