"""Runtime settings: one immutable object built by the CLI (or tests) and handed to ``create_app``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETTINGS_ENV = "DPVAULT_SETTINGS_JSON"

# Every Microsoft.DataProtection version of the spec's readme from 2023-01-01 on (stable and
# preview, up to 2026-08-31-preview), and 2026-07-01 (azure-mgmt-dataprotection 2.3.0b1's default).
# Older versions (2021-2022) describe an earlier API and are not accepted. What each version adds to
# responses is ``model/versions.py``.
DEFAULT_API_VERSIONS: tuple[str, ...] = (
    "2023-01-01",
    "2023-04-01-preview",
    "2023-05-01",
    "2023-06-01-preview",
    "2023-08-01-preview",
    "2023-11-01",
    "2023-12-01",
    "2024-02-01-preview",
    "2024-03-01",
    "2024-04-01",
    "2025-01-01",
    "2025-02-01",
    "2025-07-01",
    "2025-09-01",
    "2026-03-01",
    "2026-04-01-preview",
    "2026-06-01",
    "2026-07-01",
    "2026-08-31-preview",
)


# A request body may start slowly (the client's first window), then must keep up with min_body_rate.
BODY_RATE_GRACE = 5.0


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may take. Defaults suit ARM clients: their heads are a few KB."""

    max_head_bytes: int = 64 * 1024  # request line and headers together -> 431
    max_url_bytes: int = 16 * 1024  # -> 414
    header_timeout: float = 10.0  # TLS handshake, then each request head -> 408 (idle: closed)
    body_timeout: float = 10.0  # no byte of a body for this long -> 400
    min_body_rate: int = 1024  # bytes/s, after BODY_RATE_GRACE seconds -> 408
    # Idle between requests -> closed. Longer than clients' own idle expiry (httpx 5 s, aiohttp 15 s,
    # Go's net/http 90 s), so the client closes first: a server that closes first races a request
    # being sent on the connection, which then fails with no response (uvicorn's 5 s did, in CI).
    keep_alive_timeout: float = 120.0
    max_connections: int = 1000  # open connections per process -> 503


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    tls: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Seconds clients are told to wait between polls (Retry-After). Real Azure says 60; tests want 1.
    retry_after: int = 1
    auto_create_resource_groups: bool = True
    api_versions: tuple[str, ...] = DEFAULT_API_VERSIONS
    # Azure location reported in errors and used when a resource does not carry one.
    default_location: str = "westus"
    # Extra seconds the background worker spends configuring protection, to imitate the real
    # service's timing (and to let tests observe a running operation).
    provisioning_delay: float = 0.0
    # How long a worker may hold a job without renewing its lease; a dead worker's job is re-claimed after it.
    lease_seconds: float = 15.0
    run_worker: bool = True
    page_size: int = 200
    public_url: str | None = None
    tenant_id: str = "00000000-0000-0000-0000-000000000001"
    # "real" or "manual" (POST /dpvault/clock/advance moves it).
    clock: str = "real"
    pg_dump: str | None = None
    # Where backup bytes live (the vault datastore): a directory, file:///abs/path, azure://container[/prefix]
    # or s3://bucket[/prefix] (dpvault.datastores.urls); default <data-dir>/vault.
    vault_store: str | None = None
    key_vault: bool = False
    # Restore drills after every backup of every instance (else opt in with the tag dpvault-restore-drill).
    restore_drills: bool = False
    # Directories restore-as-files may write into (default <data-dir>/restores).
    restore_roots: tuple[Path, ...] = ()
    # The built-in issuer (token endpoint, OpenID discovery; `dpvault token`). Off: only trusted issuers.
    builtin_issuer: bool = True
    # External issuers whose tokens are accepted (OpenID discovery under each URL).
    trust_issuers: tuple[str, ...] = ()
    identity_config: Path | None = None
    # One log line per request (serve --no-access-log turns it off).
    access_log: bool = True
    # Webhooks every failed job is POSTed to (Azure Monitor's common alert schema; see alerts.py).
    alert_webhooks: tuple[str, ...] = ()
    # The schema was migrated before the app started (serve does it once for all its processes).
    migrated: bool = False

    def to_json(self) -> str:
        """For handing settings to worker processes (``serve --workers``)."""
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in fields or value is None:
                values[name] = value
                continue
            kind = str(fields[name].type)
            if "Path" in kind and "tuple" in kind:
                value = tuple(Path(v) for v in value)
            elif "Path" in kind:
                value = Path(value)
            elif "tuple" in kind:
                value = tuple(value)
            values[name] = value
        return cls(**values)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def identity_dir(self) -> Path:
        return self.data_dir / "identity"

    @property
    def vault_store_url(self) -> str:
        return self.vault_store or str(self.data_dir / "vault")

    @property
    def restore_dirs(self) -> list[Path]:
        return list(self.restore_roots) or [self.data_dir / "restores"]
