"""Job-failure alerts: every failed backup job of a vault whose
``monitoringSettings.azureMonitorAlertSettings.alertsForAllJobFailures`` is not ``Disabled`` is
POSTed to each ``serve --alert-webhook URL`` in Azure Monitor's common alert schema.

Durable and never in the way of the job: the failure's transaction queues an ``alerts.job_failed``
job (``model/backup_jobs.finish``); that job builds the alert once and queues one
``alerts.deliver`` job per webhook, which the worker retries with its backoff (0.5 s, 1 s, 2 s, ...
up to 30 s) until the webhook answers 2xx or ``DELIVERY_ATTEMPTS`` are spent. A restart loses
nothing: queued deliveries run when a worker is back. Webhook URLs may carry credentials (a
Teams or Slack token in the path): logs and job errors name only their scheme and host.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog

from dpvault.clock import from_timestamp
from dpvault.jobs.worker import Claimed
from dpvault.model import payloads
from dpvault.model.vaults.rules import decode_vault
from dpvault.resources.jobs import render
from dpvault.services import Services
from dpvault.store import Tx

log = structlog.get_logger("dpvault.alerts")

SCHEMA_ID = "azureMonitorCommonAlertSchema"
DELIVERY_ATTEMPTS = 10  # with the worker's backoff: about three minutes of retries
TIMEOUT = 10.0
_NAMESPACE = uuid.UUID("0b5b7a55-6a8e-4c1c-9d1e-6f1f3c0d2a41")  # alert ids: stable per job


class WebhookError(Exception):
    """A webhook did not take the alert (the worker retries the delivery)."""


def shown(url: str) -> str:
    """What of a webhook URL may be logged: scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def check_webhook(url: str) -> str:
    """An http(s) URL with a host, or ValueError (for ``serve --alert-webhook``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


def common_alert(job: dict[str, Any], *, vault_id: str, fired: float) -> dict[str, Any]:
    """The common alert schema for one failed backup job (``job``: its AzureBackupJobResource)."""
    props = job["properties"]
    errors = props.get("errorDetails") or []
    error = errors[0] if errors else {}
    sub = props.get("subscriptionId") or vault_id.strip("/").split("/")[1]
    target = props.get("backupInstanceId") or vault_id
    operation = props.get("operation", "")
    name = props.get("backupInstanceFriendlyName") or props.get("dataSourceName") or ""
    return {
        "schemaId": SCHEMA_ID,
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts/"
                f"{uuid.uuid5(_NAMESPACE, job['id'].lower())}",
                "alertRule": "alertsForAllJobFailures",
                "severity": "Sev1",
                "signalType": "Log",
                "monitorCondition": "Fired",
                "monitoringService": "Azure Backup",
                "alertTargetIDs": [vault_id.lower(), *([target.lower()] if target != vault_id else [])],
                "configurationItems": [v for v in (props.get("dataSourceName"), props.get("vaultName")) if v],
                "originAlertId": job["name"],
                "firedDateTime": from_timestamp(fired),
                "description": f"{operation} job failed for {name or 'the vault'}: "
                f"{error.get('message') or error.get('code') or 'no details'}",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {
                "job": job,
                "error": error or None,
                "errorCode": error.get("code"),
                "recommendedAction": "; ".join(error.get("recommendedAction") or []) or None,
                "vaultId": vault_id,
                "backupInstanceId": props.get("backupInstanceId"),
                "operation": operation,
                "startTime": props.get("startTime"),
                "endTime": props.get("endTime"),
            },
            "customProperties": None,
        },
    }


class Alerts:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.webhooks = tuple(svc.settings.alert_webhooks)
        self._context = ssl.create_default_context()

    async def job_failed(self, claimed: Claimed[payloads.JobFailureAlert]) -> bool:
        """Build the alert and queue a delivery to each webhook, in one transaction."""
        job_id = claimed.payload.job
        if not self.webhooks:
            return False  # nowhere to send (serve without --alert-webhook)
        async with self.svc.store.read() as tx:
            row = await tx.backup_job(job_id)
            vault = await tx.resource(row.vault_key, lock=False) if row is not None else None
        if row is None:
            return False
        vault_id = decode_vault(vault.body).id if vault is not None else None
        vault_id = vault_id or row.vault_key
        alert = common_alert(
            render.render(row, vault_id, self.svc.now()), vault_id=vault_id, fired=self.svc.now()
        )

        async def queue(tx: Tx) -> bool:
            now = self.svc.real_now()
            for n, url in enumerate(self.webhooks):
                body = msgspec.json.encode(payloads.AlertDelivery(url=url, alert=alert))
                await tx.enqueue(
                    payloads.AlertDelivery.kind, body, now=now, dedupe_key=f"alert:{job_id}:{n}",
                    max_attempts=DELIVERY_ATTEMPTS,
                )  # fmt: skip
            await tx.finish_job(claimed.id, claimed.worker, now=now, state="done", error=None)
            return True

        done = await self.svc.store.transact(queue)
        self.svc.wake_worker()
        return done

    async def deliver(self, claimed: Claimed[payloads.AlertDelivery]) -> None:
        """POST the alert; anything but a 2xx raises, and the worker retries with backoff."""
        url = claimed.payload.url
        body = msgspec.json.encode(claimed.payload.alert)
        status = await asyncio.to_thread(self._post, url, body)
        if not 200 <= status < 300:
            raise WebhookError(f"the webhook at {shown(url)} answered {status}")
        log.info(
            "alert delivered", webhook=shown(url), attempt=claimed.attempt,
            alert=claimed.payload.alert["data"]["essentials"]["originAlertId"],
        )  # fmt: skip

    def _post(self, url: str, body: bytes) -> int:
        request = urllib.request.Request(  # noqa: S310 - the operator's http(s) webhook (check_webhook)
            url, data=body, method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "dpvault-alerts"},
        )  # fmt: skip
        opener = urllib.request.build_opener(
            _NoRedirects(), urllib.request.HTTPSHandler(context=self._context)
        )
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebhookError(
                f"the webhook at {shown(url)} could not be reached ({type(reason).__name__})"
            ) from None

    async def give_up(self, claimed: Claimed[Any], reason: str) -> None:
        payload = claimed.payload
        if isinstance(payload, payloads.AlertDelivery):
            log.warning(
                "alert not delivered", webhook=shown(payload.url), attempts=claimed.attempt,
                alert=payload.alert["data"]["essentials"]["originAlertId"],
            )  # fmt: skip


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook's redirect is an answer (a 3xx: not delivered), never followed with the alert."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
