"""``GET /metrics``: Prometheus text format, built per scrape for the caller's tenant.

Who sees what (Prometheus sends a bearer token: ``authorization`` in its scrape config, or
``oauth2`` with a client of the built-in issuer):

- a tenant sees the series of its own subscriptions only (vault and instance names are labels, and
  never appear in another tenant's scrape);
- process-wide series that name nothing (HTTP requests by route template, the job queue, lease
  expiries) are shown to the server's own tenant only, the one that runs the server.

Series from the state database (jobs, recovery points, bytes, last backup) are the same whichever
process answers; HTTP counters and lease expiries are this process's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dpvault import __version__
from dpvault.arm.http import Principal
from dpvault.observability.requests import RequestCounter
from dpvault.observability.storage import Storage
from dpvault.services import Services
from dpvault.store import stats

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SCOPE = ("subscription", "resource_group", "vault")
_INSTANCE = (*_SCOPE, "instance")


def scope_of(key: str) -> tuple[str, str, str, str]:
    """(subscription, resource group, vault, instance) named by a vault or instance key
    (lower-cased, as keys are: series do not split when a name's casing changes)."""
    parts = key.strip("/").split("/")
    named = {parts[i]: parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    return (
        named.get("subscriptions", ""),
        named.get("resourcegroups", ""),
        named.get("backupvaults", ""),
        named.get("backupinstances", ""),
    )


class _Fixed:
    """A collector of families already built (the registry is made per scrape)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class Metrics:
    def __init__(
        self,
        svc: Services,
        requests: RequestCounter,
        *,
        lease_expiries: Callable[[], int | None],
        storage: Storage,
    ) -> None:
        self.svc = svc
        self.requests = requests
        self.lease_expiries = lease_expiries
        self.storage = storage

    async def render(self, principal: Principal) -> bytes:
        operator = principal.tenant.lower() == self.svc.settings.tenant_id.lower()
        async with self.svc.store.read() as tx:
            own = {str(r["id"]).lower() for r in await tx.subscriptions_of(principal.tenant)}
            jobs = [j for j in await stats.job_counts(tx) if scope_of(j.vault_key)[0] in own]
            instances = [i for i in await stats.instance_stats(tx) if scope_of(i.instance_key)[0] in own]
            queue = await stats.queue_depth(tx) if operator else []
        families = [*self._jobs(jobs), *await self._protection(instances)]
        if operator:
            families += self._process(queue)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(families))  # type: ignore[arg-type]
        return generate_latest(registry)

    @staticmethod
    def _jobs(rows: list[stats.JobCounts]) -> Iterable[Metric]:
        counts = GaugeMetricFamily(
            "dpvault_backup_jobs",
            "Backup-job records (backupJobs) by vault, operation and status.",
            labels=[*_SCOPE, "operation", "status"],
        )
        merged: dict[tuple[str, str], list[Any]] = defaultdict(
            lambda: [0, 0.0, [0] * len(stats.DURATION_BUCKETS)]
        )
        for row in rows:
            sub, rg, vault, _ = scope_of(row.vault_key)
            counts.add_metric([sub, rg, vault, row.operation, row.status], row.count)
            if row.finished:
                entry = merged[(row.operation, row.status)]
                entry[0] += row.finished
                entry[1] += row.duration_sum
                entry[2] = [a + b for a, b in zip(entry[2], row.buckets, strict=True)]
        durations = HistogramMetricFamily(
            "dpvault_backup_job_duration_seconds",
            "How long finished backup jobs took, by operation and status.",
            labels=["operation", "status"],
        )
        for (operation, status), (finished, total, buckets) in sorted(merged.items()):
            points = [(_bound(b), float(n)) for b, n in zip(stats.DURATION_BUCKETS, buckets, strict=True)]
            durations.add_metric([operation, status], [*points, ("+Inf", float(finished))], total)
        return [counts, durations]

    async def _protection(self, rows: list[stats.InstanceStats]) -> list[Metric]:
        points = GaugeMetricFamily(
            "dpvault_recovery_points",
            "Available recovery points per backup instance.",
            labels=list(_INSTANCE),
        )
        stored = GaugeMetricFamily(
            "dpvault_recovery_point_bytes",
            "Bytes of the available recovery points per backup instance (archive sizes).",
            labels=list(_INSTANCE),
        )
        backed_up = CounterMetricFamily(
            "dpvault_backed_up_bytes",
            "Bytes written by completed backups per backup instance.",
            labels=list(_INSTANCE),
        )
        last = GaugeMetricFamily(
            "dpvault_last_successful_backup_timestamp_seconds",
            "When the newest completed backup of the instance ended (Unix time).",
            labels=list(_INSTANCE),
        )
        by_vault: dict[str, int] = defaultdict(int)
        for row in rows:
            labels = list(scope_of(row.instance_key))
            points.add_metric(labels, row.recovery_points)
            stored.add_metric(labels, row.stored_bytes)
            backed_up.add_metric(labels, row.backed_up_bytes)
            if row.last_success is not None:
                last.add_metric(labels, row.last_success)
            by_vault[row.vault_key] += row.stored_bytes
        vault_bytes = GaugeMetricFamily(
            "dpvault_vault_stored_bytes",
            "Bytes a vault's recovery points hold (logical: archive sizes).",
            labels=list(_SCOPE),
        )
        physical = GaugeMetricFamily(
            "dpvault_vault_physical_bytes",
            "Bytes a vault takes in its datastore after deduplication (where the vault format knows it).",
            labels=list(_SCOPE),
        )
        ratio = GaugeMetricFamily(
            "dpvault_vault_deduplication_ratio",
            "Logical / physical bytes of a vault (where the vault format knows it).",
            labels=list(_SCOPE),
        )
        for vault_key, logical in sorted(by_vault.items()):
            labels = list(scope_of(vault_key)[:3])
            vault_bytes.add_metric(labels, logical)
            usage = await self.storage.usage(vault_key, logical)
            if usage.physical is not None:
                physical.add_metric(labels, usage.physical)
            if usage.dedup_ratio is not None:
                ratio.add_metric(labels, usage.dedup_ratio)
        return [points, stored, backed_up, last, vault_bytes, physical, ratio]

    def _process(self, queue: list[tuple[str, str, int]]) -> list[Metric]:
        requests = CounterMetricFamily(
            "dpvault_http_requests",
            "HTTP requests this process answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        seconds = SummaryMetricFamily(
            "dpvault_http_request_duration_seconds",
            "Time this process spent answering HTTP requests, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        for route, method, status, n, total in self.requests.snapshot():
            labels = [route, method, str(status)]
            requests.add_metric(labels, n)
            seconds.add_metric(labels, n, total)
        depth = GaugeMetricFamily(
            "dpvault_job_queue_depth",
            "Queued background jobs by kind and state (ready: waiting; running: leased).",
            labels=["kind", "state"],
        )
        for kind, state, n in queue:
            depth.add_metric([kind, state], n)
        out: list[Metric] = [requests, seconds, depth]
        expiries = self.lease_expiries()
        if expiries is not None:
            counter = CounterMetricFamily(
                "dpvault_job_lease_expiries",
                "Jobs this process's worker found with an expired lease (their worker died) and requeued.",
            )
            counter.add_metric([], expiries)
            out.append(counter)
        info = GaugeMetricFamily("dpvault_build_info", "dpvault's version.", labels=["version"])
        info.add_metric([__version__], 1)
        out.append(info)
        return out


def _bound(value: float) -> str:
    return str(float(value))
