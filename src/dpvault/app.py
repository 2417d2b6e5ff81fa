"""The composition root: ``create_app(settings)`` builds everything in a visible order, and the
ASGI application that turns HTTP into routed, authenticated ARM calls.

Per request: method check (405) -> authentication (401) -> route (404/405) -> handler, which checks
api-version, names and body. Every failure is an ArmError rendered as a CloudError; anything else
is logged and answered 500 (a bug: no input should get there).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import structlog

from dpvault import errors
from dpvault import logging as dplogging
from dpvault.arm import ids
from dpvault.arm.http import JSON, Call, Reply, base_url_for, encode
from dpvault.arm.routing import Router, split_path
from dpvault.dashboard.routes import DashboardRoutes
from dpvault.identity import issuers, keys, metadata
from dpvault.identity.builtin import BuiltinIssuer
from dpvault.identity.clients import ClientRegistry
from dpvault.identity.tenants import Tenants
from dpvault.identity.verifier import AUDIENCES, Verifier
from dpvault.model.guards.rules import REQUEST_COLLECTIONS
from dpvault.observability.metrics import Metrics
from dpvault.observability.probes import Probes
from dpvault.observability.requests import RequestCounter
from dpvault.observability.routes import ObservabilityRoutes
from dpvault.observability.storage import Storage, StoredBytes
from dpvault.protection.service import Protection
from dpvault.protection.timekeeper import Timekeeper
from dpvault.resources.clock import ClockRoutes
from dpvault.resources.crossregion.handlers import CrossRegionRoutes
from dpvault.resources.deletedinstances.handlers import DeletedInstanceRoutes
from dpvault.resources.deletedvaults.handlers import DeletedVaultRoutes
from dpvault.resources.features.handlers import FeatureRoutes
from dpvault.resources.groups import ResourceGroupRoutes
from dpvault.resources.guardproxies.handlers import GuardProxyRoutes
from dpvault.resources.instanceops.handlers import InstanceOperationRoutes
from dpvault.resources.instances.actions import TRANSITIONS, ActionRoutes
from dpvault.resources.instances.handlers import InstanceRoutes
from dpvault.resources.jobs.export import ExportRoutes
from dpvault.resources.jobs.handlers import JobRoutes
from dpvault.resources.operations import OperationRoutes
from dpvault.resources.policies.handlers import PolicyRoutes
from dpvault.resources.provider import ProviderRoutes
from dpvault.resources.recoverypoints.handlers import RecoveryPointRoutes
from dpvault.resources.resourceguards.handlers import ResourceGuardRoutes
from dpvault.resources.restores.handlers import RestoreRoutes
from dpvault.resources.vaults.handlers import VaultRoutes
from dpvault.runtime import Runtime
from dpvault.services import Services
from dpvault.settings import SETTINGS_ENV, Settings

log = structlog.get_logger("dpvault.http")

ALLOWED_METHODS = frozenset({"GET", "PUT", "PATCH", "POST", "DELETE", "HEAD"})

_S = "/subscriptions/{subscriptionId}"
_RG = _S + "/resourceGroups/{resourceGroupName}"
_DP = "/providers/Microsoft.DataProtection"
_V = _RG + _DP + "/backupVaults/{vaultName}"
_BI = _V + "/backupInstances/{backupInstanceName}"
_G = _RG + _DP + "/resourceGuards/{resourceGuardsName}"


def build_identity_routes(r: Router, builtin: BuiltinIssuer | None, tenants: Tenants) -> None:
    """Identity: metadata, OpenID discovery, JWKS, token endpoint (no token needed), subscriptions."""
    r.add("/metadata/endpoints", {"GET": metadata.endpoints}, auth=False)
    r.add("/subscriptions", {"GET": tenants.list})
    r.add("/subscriptions/{subscriptionId}", {"GET": tenants.get})
    if builtin is None:
        return
    r.add("/common/discovery/instance", {"GET": builtin.instance_discovery}, auth=False)
    for pattern in (
        "/{tenant}/v2.0/.well-known/openid-configuration",
        "/{tenant}/.well-known/openid-configuration",
    ):
        r.add(pattern, {"GET": builtin.openid_configuration}, auth=False)
    for pattern in ("/{tenant}/discovery/v2.0/keys", "/{tenant}/discovery/keys"):
        r.add(pattern, {"GET": builtin.keys}, auth=False)
    r.add("/{tenant}/oauth2/v2.0/token", {"POST": builtin.token_v2}, auth=False)
    r.add("/{tenant}/oauth2/token", {"POST": builtin.token_v1}, auth=False)


def build_router(svc: Services, protection: Protection, timekeeper: Timekeeper | None = None) -> Router:
    groups = ResourceGroupRoutes(svc, protection.points)
    vaults = VaultRoutes(svc, protection.points)
    policies = PolicyRoutes(svc)
    instances = InstanceRoutes(svc, protection)
    ops = OperationRoutes(svc)
    provider = ProviderRoutes(svc)
    points = RecoveryPointRoutes(svc)
    jobs = JobRoutes(svc)
    clock = ClockRoutes(svc, timekeeper)
    restores = RestoreRoutes(svc, protection)
    actions = ActionRoutes(svc, protection)
    guards = ResourceGuardRoutes(svc)
    proxies = GuardProxyRoutes(svc)
    deleted = DeletedInstanceRoutes(svc, protection)
    deleted_vaults = DeletedVaultRoutes(svc)
    instance_ops = InstanceOperationRoutes(svc)
    crr = CrossRegionRoutes(svc)
    features = FeatureRoutes(svc, protection)
    exports = ExportRoutes(svc)
    r = Router()
    # Microsoft.Resources stubs
    r.add(_S + "/resourcegroups", {"GET": groups.list})
    r.add(_RG, {"PUT": groups.put, "GET": groups.get, "DELETE": groups.delete})
    # provider
    r.add(_DP + "/operations", {"GET": provider.operations})
    # vaults
    r.add(_S + _DP + "/backupVaults", {"GET": vaults.list_in_subscription})
    r.add(_RG + _DP + "/backupVaults", {"GET": vaults.list_in_group})
    r.add(_V, {"PUT": vaults.put, "GET": vaults.get, "PATCH": vaults.patch, "DELETE": vaults.delete})
    r.add(_RG + _DP + "/locations/{location}/checkNameAvailability", {"POST": vaults.check_name})
    r.add(_S + _DP + "/locations/{location}/deletedVaults", {"GET": deleted_vaults.list})
    r.add(_S + _DP + "/locations/{location}/deletedVaults/{deletedVaultName}", {"GET": deleted_vaults.get})
    r.add(_S + _DP + "/locations/{location}/checkFeatureSupport", {"POST": features.check})
    # resource guards and a vault's link to one (multi-user authorization)
    r.add(_S + _DP + "/resourceGuards", {"GET": guards.list_in_subscription})
    r.add(_RG + _DP + "/resourceGuards", {"GET": guards.list_in_group})
    r.add(_G, {"PUT": guards.put, "GET": guards.get, "PATCH": guards.patch, "DELETE": guards.delete})
    for collection in REQUEST_COLLECTIONS:
        r.add(_G + f"/{collection}", {"GET": guards.requests(collection, single=False)})
        r.add(_G + f"/{collection}/{{requestName}}", {"GET": guards.requests(collection, single=True)})
    r.add(_V + "/backupResourceGuardProxies", {"GET": proxies.list})
    r.add(
        _V + "/backupResourceGuardProxies/{resourceGuardProxyName}",
        {"PUT": proxies.put, "GET": proxies.get, "DELETE": proxies.delete},
    )
    r.add(
        _V + "/backupResourceGuardProxies/{resourceGuardProxyName}/unlockDelete",
        {"POST": proxies.unlock_delete},
    )
    # policies
    r.add(_V + "/backupPolicies", {"GET": policies.list})
    r.add(
        _V + "/backupPolicies/{backupPolicyName}",
        {"PUT": policies.put, "GET": policies.get, "DELETE": policies.delete},
    )
    # instances
    r.add(_V + "/backupInstances", {"GET": instances.list})
    r.add(_BI, {"PUT": instances.put, "GET": instances.get, "DELETE": instances.delete})
    r.add(_V + "/validateForBackup", {"POST": instances.validate_for_backup})
    r.add(_BI + "/backup", {"POST": instances.backup})
    r.add(_BI + "/restore", {"POST": restores.restore})
    r.add(_BI + "/validateRestore", {"POST": restores.validate_restore})
    for action in TRANSITIONS:
        r.add(_BI + f"/{action}", {"POST": actions.route(action)})
    r.add(_BI + "/sync", {"POST": actions.sync})
    r.add(_BI + "/recoveryPoints", {"GET": points.list})
    r.add(_BI + "/recoveryPoints/{recoveryPointId}", {"GET": points.get})
    r.add(_BI + "/findRestorableTimeRanges", {"POST": instance_ops.find_restorable_time_ranges})
    r.add(_BI + "/validateForModifyBackup", {"POST": instance_ops.validate_for_modify_backup})
    r.add(_BI + "/rehydrate", {"POST": instance_ops.rehydrate})
    # soft-deleted instances
    r.add(_V + "/deletedBackupInstances", {"GET": deleted.list})
    r.add(_V + "/deletedBackupInstances/{backupInstanceName}", {"GET": deleted.get})
    r.add(_V + "/deletedBackupInstances/{backupInstanceName}/undelete", {"POST": deleted.undelete})
    r.add(
        _V + "/deletedBackupInstances/{backupInstanceName}/recoveryPoints", {"GET": deleted.recovery_points}
    )
    r.add(
        _V + "/deletedBackupInstances/{backupInstanceName}/recoveryPoints/{recoveryPointId}",
        {"GET": deleted.recovery_point},
    )
    # cross-region restore (refused: one region)
    loc = _RG + _DP + "/locations/{location}"
    r.add(loc + "/crossRegionRestore", {"POST": crr.trigger})
    r.add(loc + "/validateCrossRegionRestore", {"POST": crr.validate})
    r.add(loc + "/fetchSecondaryRecoveryPoints", {"POST": crr.secondary_points})
    r.add(loc + "/fetchCrossRegionRestoreJob", {"POST": crr.job})
    r.add(loc + "/fetchCrossRegionRestoreJobs", {"POST": crr.jobs})
    # backup jobs
    r.add(_V + "/backupJobs", {"GET": jobs.list})
    r.add(_V + "/backupJobs/{jobId}", {"GET": jobs.get})
    r.add(_V + "/exportBackupJobs", {"POST": exports.export})
    r.add(_V + "/backupJobs/operations/{operationId}", {"GET": exports.result})
    r.add(_V + "/backupJobs/operations/{operationId}/jobs.csv", {"GET": exports.report})
    # dpvault's own: the controllable clock
    r.add("/dpvault/clock", {"GET": clock.get})
    r.add("/dpvault/clock/advance", {"POST": clock.advance})
    r.add("/dpvault/restoreDrills", {"POST": restores.drill})
    # long-running operations
    r.add(_S + _DP + "/locations/{location}/operationStatus/{operationId}", {"GET": ops.status})
    r.add(_RG + _DP + "/operationStatus/{operationId}", {"GET": ops.status})
    r.add(_V + "/operationStatus/{operationId}", {"GET": ops.status})
    r.add(_S + _DP + "/locations/{location}/operationResults/{operationId}", {"GET": ops.result})
    r.add(_V + "/operationResults/{operationId}", {"GET": ops.result})
    r.add(_BI + "/operationResults/{operationId}", {"GET": ops.result})
    # Location URLs of the examples (not in the spec), served too
    r.add(_RG + _DP + "/operationResults/{operationId}", {"GET": ops.result})
    r.add(
        _RG + _DP + "/backupInstances/{backupInstanceName}/operationResults/{operationId}",
        {"GET": ops.result},
    )
    # the backup instances protecting a resource (an extension resource under any ARM id)
    r.add(_S + "/{*resourceId}" + _DP + "/backupInstances", {"GET": instance_ops.list_for_resource})
    return r


class DpvaultApp:
    """The ASGI application. State is built at lifespan startup, not at import or construction."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(settings)
        self.router: Router | None = None
        self.verifier: Verifier | None = None
        self.tenants: Tenants | None = None
        scheme = "https" if settings.tls else "http"
        self._fallback_base = settings.public_url or f"{scheme}://{settings.host}:{settings.port}"
        self._scheme = scheme
        static = {
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "Expires": "-1",
            "X-Content-Type-Options": "nosniff",
        }
        if settings.tls:
            static["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        self._static_raw = [(k.lower().encode(), v.encode()) for k, v in static.items()]
        self.requests = RequestCounter()  # for /metrics: counted on the hot path, read when scraped

    @property
    def services(self) -> Services | None:
        return self.runtime.services

    # -- lifecycle ----------------------------------------------------------------------------

    async def startup(self) -> None:
        # 1. the runtime: state, clock, protection, worker, scheduler (runtime.py)
        svc = await self.runtime.start()
        # 2. identity: our signing key (built-in issuer), trusted issuers, tenants
        settings = self.settings
        signing_key = keys.load_or_create(settings.identity_dir)
        own = (self._fallback_base + "/",) + ((settings.public_url + "/",) if settings.public_url else ())
        self.verifier = Verifier(
            signing_key if settings.builtin_issuer else None,
            issuers=issuers.load(list(settings.trust_issuers), settings.identity_config),
            extra_audiences=own,
        )
        self.tenants = Tenants(svc)
        svc.authorize = self.tenants.authorize
        svc.verify_token = self.verifier.verify
        builtin = None
        if settings.builtin_issuer:
            builtin = BuiltinIssuer(signing_key, ClientRegistry(svc.store), AUDIENCES + own)
        # 3. routes
        assert self.runtime.protection is not None
        self.router = build_router(svc, self.runtime.protection, self.runtime.timekeeper)
        build_identity_routes(self.router, builtin, self.tenants)
        # 4. the operator's routes: metrics, probes, the dashboard
        worker = self.runtime.worker
        storage = Storage(StoredBytes(svc.store))
        metrics = Metrics(
            svc, self.requests, storage=storage,
            lease_expiries=lambda: worker.lease_expiries if worker is not None else None,
        )  # fmt: skip
        probes = Probes(svc.store, self.runtime.protection.points.datastore)
        ObservabilityRoutes(metrics, probes).add_to(self.router)
        DashboardRoutes(svc, signing_key, storage=storage, secure=settings.tls).add_to(self.router)

    async def shutdown(self) -> None:
        await self.runtime.stop()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests -----------------------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        method = scope["method"].upper()
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if b"?" in raw_path:
            raw_path = raw_path.split(b"?", 1)[0]
        call = Call(
            method=method,
            path=scope["path"],
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            base_url=self.settings.public_url
            or base_url_for(self._scheme, headers.get("host"), self._fallback_base),
            receive=receive,
            request_id=request_id,
        )
        try:
            reply = await self._dispatch(call, raw_path)
        except errors.ArmError as exc:
            reply = Reply.json(exc.status, exc.body(), exc.headers)
        except Exception:
            log.exception("unhandled error", request_id=request_id, method=method, path=scope["path"])
            internal = errors.ArmError(
                500,
                "InternalServerError",
                f"The server encountered an internal error (request id {request_id}).",
            )
            reply = Reply.json(500, internal.body())
        await self._send(call, reply, send)
        self.requests.count(call.route, method, reply.status, time.perf_counter() - started)
        if self.settings.access_log:
            log.info(
                "request", method=method, path=scope["path"], status=reply.status,
                ms=round((time.perf_counter() - started) * 1000, 2), request_id=request_id,
            )  # fmt: skip

    async def _dispatch(self, call: Call, raw_path: bytes) -> Reply:
        if call.method not in ALLOWED_METHODS:
            raise errors.ArmError(
                405,
                "MethodNotAllowed",
                f"The http method '{call.method}' is not supported.",
                headers={"Allow": ", ".join(sorted(ALLOWED_METHODS))},
            )
        assert self.verifier is not None and self.router is not None and self.tenants is not None
        try:
            parts = split_path(raw_path)
            call.path = "/" + "/".join(parts)
            route, handler, params = self.router.resolve(call.method, parts)
            call.route = route.pattern
        except errors.ArmError:
            # Unknown paths and methods are answered only to authenticated callers.
            await self.verifier.verify(call.headers.get("authorization"))
            raise
        call.params = params
        if route.auth:
            call.principal = await self.verifier.verify(call.headers.get("authorization"))
            sub = params.get("subscriptionId")
            if sub is not None:
                await self.tenants.authorize(call.principal, ids.check_subscription(sub))
        return await handler(call)

    async def _send(self, call: Call, reply: Reply, send: Any) -> None:
        """Two ASGI messages, headers pre-encoded: Starlette's Response object cost ~6% of a PUT
        under bench P1 for what is a fixed header list (measured with py-spy)."""
        correlation = call.headers.get("x-ms-correlation-request-id") or call.request_id
        headers = [
            *self._static_raw,
            (b"x-ms-request-id", call.request_id.encode()),
            (b"x-ms-correlation-request-id", correlation.encode("latin-1")),
        ]
        client_id = call.headers.get("x-ms-client-request-id")
        if client_id and call.headers.get("x-ms-return-client-request-id", "").lower() == "true":
            headers.append((b"x-ms-client-request-id", client_id.encode("latin-1")))
        headers.append(_READS if call.method in ("GET", "HEAD") else _WRITES)
        for name, value in reply.headers.items():
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        body = reply.body
        if body is None:
            if reply.status not in (204, 304):
                headers.append((b"content-length", b"0"))
            body = b""
        else:
            if "Content-Type" not in reply.headers:  # JSON unless the handler said otherwise (a CSV, a page)
                headers.append(
                    (b"content-type", _JSON if reply.content_type is JSON else reply.content_type.encode())
                )
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if call.method == "HEAD" else body})


_JSON = JSON.encode()
_READS = (b"x-ms-ratelimit-remaining-subscription-reads", b"11999")
_WRITES = (b"x-ms-ratelimit-remaining-subscription-writes", b"1199")


def create_app(settings: Settings) -> DpvaultApp:
    return DpvaultApp(settings)


def from_environment() -> DpvaultApp:
    """The app factory ``serve --workers N`` hands to uvicorn: settings come from the environment."""
    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    dplogging.configure(
        level=os.environ.get("DPVAULT_LOG_LEVEL", "info"), json=os.environ.get("DPVAULT_LOG_JSON") == "1"
    )
    return DpvaultApp(settings)


__all__ = ["DpvaultApp", "create_app", "encode"]
