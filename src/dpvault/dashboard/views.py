"""What the dashboard's pages show, read from the state database for one tenant.

Everything is scoped by the session's tenant first: only subscriptions that tenant owns are ever
read, and a page of another tenant's vault or instance is a 404, exactly as for a missing one.
Jobs are rendered by the API's own renderer (``resources/jobs/render.py``), so the dashboard shows
what ``backupJobs`` answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from dpvault.observability.storage import Storage, Usage
from dpvault.resources.jobs import render
from dpvault.services import Services
from dpvault.store import BackupJobRow, RecoveryPointRow, ResourceRow, Tx, stats
from dpvault.types import Kind

RECENT_JOBS = 50
TIMELINE_POINTS = 500


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass
class Job:
    id: str
    operation: str
    status: str
    instance: str
    start: str
    end: str
    duration: str
    bytes: str
    error_code: str | None
    error_message: str | None
    recommended: list[str]
    link: str | None  # the instance page
    started_at: float


@dataclass
class Vault:
    key: str
    name: str
    subscription: str
    resource_group: str
    location: str
    link: str
    instances: int = 0
    points: int = 0
    usage: Usage = field(default_factory=lambda: Usage(0))
    last_backup: str = "—"
    failed_jobs: int = 0


@dataclass
class Point:
    id: str
    time: float
    shown: str
    tag: str
    expiry: str
    size: str
    drill: str | None  # Passed / Failed / None
    drill_detail: str


@dataclass
class Instance:
    key: str
    name: str
    link: str
    datasource: str
    datasource_type: str
    policy: str
    state: str
    status: str
    error: dict[str, Any] | None
    points: int = 0
    stored: str = "—"
    last_backup: str = "—"
    last_backup_status: str | None = None


def _body(row: ResourceRow) -> dict[str, Any]:
    return msgspec.json.decode(row.body)


def _scope(key: str) -> dict[str, str]:
    parts = key.strip("/").split("/")
    return {parts[i]: parts[i + 1] for i in range(0, len(parts) - 1, 2)}


def vault_link(row: ResourceRow) -> str:
    s = _scope(row.key)
    body = _body(row)
    rg = (body.get("id") or row.key).split("/")[4] if body.get("id") else s.get("resourcegroups", "")
    return f"/dashboard/subscriptions/{row.subscription}/resourceGroups/{rg}/vaults/{row.name}"


class Views:
    def __init__(self, svc: Services, storage: Storage) -> None:
        self.svc = svc
        self.storage = storage

    async def subscriptions(self, tx: Tx, tenant: str) -> list[str]:
        return [str(r["id"]).lower() for r in await tx.subscriptions_of(tenant)]

    async def vaults(self, tx: Tx, tenant: str) -> list[ResourceRow]:
        out: list[ResourceRow] = []
        for sub in await self.subscriptions(tx, tenant):
            out += await tx.resources_by(Kind.VAULT, subscription=sub)
        return out

    async def vault(self, tx: Tx, tenant: str, sub: str, rg: str, name: str) -> ResourceRow | None:
        """The vault, if the tenant owns its subscription (else None, as for a missing one)."""
        if sub.lower() not in await self.subscriptions(tx, tenant):
            return None
        key = (
            f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.dataprotection/backupvaults/{name}"
        )
        row = await tx.resource(key.lower(), lock=False)
        return row if row is not None and row.kind == Kind.VAULT else None

    def job(self, row: BackupJobRow, vault: ResourceRow, now: float) -> Job:
        vault_id = _body(vault).get("id") or vault.key
        props = render.render(row, vault_id, now)["properties"]
        error = (props.get("errorDetails") or [None])[0] or {}
        instance = (row.instance_key or "").rsplit("/", 1)[-1]
        return Job(
            id=row.id, operation=row.operation, status=row.status,
            instance=props.get("backupInstanceFriendlyName") or instance, start=when(row.start_time),
            end=when(row.end_time), duration=props.get("duration", ""), bytes=size(row.bytes),
            error_code=error.get("code"), error_message=error.get("message"),
            recommended=list(error.get("recommendedAction") or []),
            link=f"{vault_link(vault)}/instances/{instance}" if instance else None, started_at=row.start_time,
        )  # fmt: skip

    async def overview(self, tx: Tx, tenant: str) -> dict[str, Any]:
        now = self.svc.now()
        vault_rows = await self.vaults(tx, tenant)
        by_key = {v.key: v for v in vault_rows}
        instance_stats = {i.instance_key: i for i in await stats.instance_stats(tx) if i.vault_key in by_key}
        failed_by_vault: dict[str, int] = {}
        for counts in await stats.job_counts(tx):
            if counts.vault_key in by_key and counts.status == "Failed":
                failed_by_vault[counts.vault_key] = failed_by_vault.get(counts.vault_key, 0) + counts.count
        vaults = []
        for row in vault_rows:
            s = _scope(row.key)
            body = _body(row)
            mine = [i for i in instance_stats.values() if i.vault_key == row.key]
            logical = sum(i.stored_bytes for i in mine)
            last = max((i.last_success for i in mine if i.last_success is not None), default=None)
            vault = Vault(
                key=row.key, name=row.name, subscription=row.subscription,
                resource_group=(body.get("id") or "").split("/")[4] if body.get("id") else s.get("resourcegroups", ""),
                location=str(body.get("location", "")), link=vault_link(row),
                instances=await tx.count_resources(Kind.INSTANCE, parent_key=row.key),
                points=sum(i.recovery_points for i in mine), usage=await self.storage.usage(row.key, logical),
                last_backup=when(last), failed_jobs=failed_by_vault.get(row.key, 0),
            )  # fmt: skip
            vaults.append(vault)
        recent = await stats.recent_backup_jobs(tx, list(by_key), limit=RECENT_JOBS)
        jobs = [self.job(r, by_key[r.vault_key], now) for r in recent]
        running = [j for j in jobs if j.status == "InProgress"]
        failed = [j for j in jobs if j.status == "Failed"]
        total = Usage(sum(v.usage.logical for v in vaults))
        physical = [v.usage.physical for v in vaults]
        if vaults and all(p is not None for p in physical):
            total = Usage(total.logical, sum(p or 0 for p in physical))
        return {
            "vaults": vaults, "running": running, "failed": failed, "jobs": jobs, "usage": total,
            "instances": sum(v.instances for v in vaults), "points": sum(v.points for v in vaults),
        }  # fmt: skip

    def _instance(self, row: ResourceRow, vault: ResourceRow, st: stats.InstanceStats | None) -> Instance:
        props = _body(row).get("properties") or {}
        ds = props.get("dataSourceInfo") or {}
        status = props.get("protectionStatus") or {}
        error = props.get("protectionErrorDetails") or (status.get("errorDetails") or None)
        policy = ((props.get("policyInfo") or {}).get("policyId") or "").rstrip("/").rsplit("/", 1)[-1]
        return Instance(
            key=row.key, name=row.name, link=f"{vault_link(vault)}/instances/{row.name}",
            datasource=ds.get("resourceName") or ds.get("resourceID", ""),
            datasource_type=ds.get("datasourceType") or ds.get("resourceType", ""), policy=policy,
            state=props.get("currentProtectionState", ""), status=status.get("status", ""),
            error=error if isinstance(error, dict) else None,
            points=st.recovery_points if st else 0, stored=size(st.stored_bytes if st else 0),
            last_backup=when(st.last_success if st else None),
        )  # fmt: skip

    async def vault_page(self, tx: Tx, vault: ResourceRow) -> dict[str, Any]:
        now = self.svc.now()
        st = {i.instance_key: i for i in await stats.instance_stats(tx) if i.vault_key == vault.key}
        rows = await tx.resources_by(Kind.INSTANCE, parent_key=vault.key)
        instances = [self._instance(r, vault, st.get(r.key)) for r in rows]
        recent = await stats.recent_backup_jobs(tx, [vault.key], limit=RECENT_JOBS)
        jobs = [self.job(r, vault, now) for r in recent]
        for instance in instances:
            last = next((j for j in jobs if j.operation == "Backup" and j.link == instance.link), None)
            instance.last_backup_status = last.status if last else None
        logical = sum(i.stored_bytes for i in st.values())
        body = _body(vault)
        return {
            "vault": vault, "name": vault.name, "location": body.get("location", ""), "instances": instances,
            "jobs": jobs, "usage": await self.storage.usage(vault.key, logical),
            "alerts": ((((body.get("properties") or {}).get("monitoringSettings") or {}).get("azureMonitorAlertSettings")
                        or {}).get("alertsForAllJobFailures") or "Enabled"),
        }  # fmt: skip

    async def instance_page(self, tx: Tx, vault: ResourceRow, name: str) -> dict[str, Any] | None:
        row = await tx.resource(f"{vault.key}/backupinstances/{name.lower()}", lock=False)
        if row is None or row.kind != Kind.INSTANCE:
            return None
        now = self.svc.now()
        st = next((i for i in await stats.instance_stats(tx) if i.instance_key == row.key), None)
        instance = self._instance(row, vault, st)
        rps = await tx.recovery_points_of(row.key, limit=TIMELINE_POINTS)
        points = [self._point(rp) for rp in rps]
        recent = await stats.recent_backup_jobs(tx, [vault.key], instance_key=row.key, limit=RECENT_JOBS)
        jobs = [self.job(r, vault, now) for r in recent]
        last = next((j for j in jobs if j.operation == "Backup"), None)
        instance.last_backup_status = last.status if last else None
        return {
            "vault": vault, "vault_link": vault_link(vault), "instance": instance, "points": points, "jobs": jobs,
            "timeline": timeline(points, now),
        }  # fmt: skip

    @staticmethod
    def _point(rp: RecoveryPointRow) -> Point:
        details = msgspec.json.decode(rp.details) if rp.details else {}
        drill = details.get("drill") if isinstance(details, dict) else None
        status = drill.get("status") if isinstance(drill, dict) else None
        detail = ""
        if isinstance(drill, dict):
            detail = f"{status} at {drill.get('time', '')}" + (
                f" ({drill['code']})" if drill.get("code") else ""
            )
        return Point(
            id=rp.id, time=rp.time, shown=when(rp.time), tag=rp.tag, expiry=when(rp.expiry), size=size(rp.size),
            drill=status, drill_detail=detail,
        )  # fmt: skip


def timeline(points: list[Point], now: float) -> dict[str, Any]:
    """Marker positions (0..1000) of the points on an axis from the oldest point to now."""
    if not points:
        return {"markers": [], "start": when(now), "end": when(now)}
    start = min(p.time for p in points)
    end = max(now, max(p.time for p in points))
    span = max(end - start, 1.0)
    tags = sorted({p.tag for p in points})
    markers = [
        {"x": round(20 + 960 * (p.time - start) / span, 1), "row": tags.index(p.tag), "point": p}
        for p in points
    ]
    return {
        "markers": markers,
        "tags": tags,
        "start": when(start),
        "end": when(end),
        "height": 40 + 28 * len(tags),
    }
