"""Test support: a real dpvault server process, a real PostgreSQL server, an HTTPS client.

Nothing here mocks dpvault: the server runs as ``python -m dpvault serve`` and tests talk HTTPS to it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SUB = "04cf684a-d41f-4550-9f70-7708a3a2283b"
API = "2023-01-01"


_CLI_LOCK = threading.Lock()  # the runner swaps sys.stdin/stdout and os.environ while it runs


def run_cli(
    *args: str, input: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A ``dpvault`` command run in this process through Typer's runner: the same parsing, checks,
    store and output as the installed command, without a Python start-up and dpvault's imports
    (about 1.8 CPU-seconds each, which fixtures paid hundreds of times per run on this 2-core
    machine). For setup (tokens, secrets, source mappings); tests of the commands themselves run
    ``python -m dpvault`` as a process."""
    from typer.testing import CliRunner

    from dpvault.cli import app

    def invoke() -> Any:
        return CliRunner().invoke(app, list(args), input=input, env=env, catch_exceptions=False)

    # on a thread of its own: the command runs asyncio.run, and the caller may be in an event
    # loop (Playwright's sync API runs one)
    with _CLI_LOCK, concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(invoke).result()
    return subprocess.CompletedProcess(["dpvault", *args], result.exit_code, result.stdout, result.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists():
            return c
    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster; as root it runs as the ``postgres`` user via runuser."""

    root: Path
    port: int = field(default_factory=free_port)
    proc_user: str | None = None
    # TCP connections need this password (so tests can show a wrong one failing); the socket is trusted.
    password: str = "dpvault-test-pw"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.proc_user:
            cmd = ["runuser", "-u", self.proc_user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.data = self.root / "pgdata"
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.proc_user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.proc_user:
            shutil.chown(pwfile, self.proc_user)
        self._run(
            str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
        )  # fmt: skip
        self._run(
            str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w",
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        import psycopg

        name = name or "dpv_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def ado(self, database: str, *, user: str = "postgres", password: str | None = None) -> str:
        """The connection string the way Azure Backup stores it in Key Vault (ADO.NET style)."""
        password = self.password if password is None else password
        return f"Server=127.0.0.1;Database={database};Port={self.port};User Id={user};Password={password};Ssl Mode=Disable;"

    def sql(self, database: str, statement: str) -> list[tuple[Any, ...]]:
        """Run SQL as the superuser (over the trusted socket); returns the rows, if any."""
        import psycopg

        with psycopg.connect(
            host=str(self.root), port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []


class Server:
    """``dpvault serve`` as a child process on a free port, HTTPS with its generated CA."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        args: list[str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.args = args or []
        self.environ = environ or {}  # added to the process environment (an object store's credentials)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self._token: tuple[tuple[int, int], str] | None = None

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def vault_store(self) -> str:
        """What ``--vault-store`` says (default: the data dir's vault directory)."""
        if "--vault-store" in self.args:
            return self.args[self.args.index("--vault-store") + 1]
        return str(self.data_dir / "vault")

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def start(self, timeout: float = 30.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "dpvault", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--retry-after", "1", *self.args]  # fmt: skip
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.environ},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dpvault exited with {self.proc.returncode}:\n{self.log()}")
            # /healthz needs no token: uvicorn answers it once the app's start-up is complete.
            with contextlib.suppress(httpx.HTTPError, OSError):
                if httpx.get(f"{self.base}/healthz", verify=self.ssl_context(), timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"dpvault did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def token(self, *extra: str) -> str:
        """``dpvault token`` for this server's data dir (in this process, ``run_cli``). The plain
        token (no options) is made once per signing key and reused: it is valid for a day."""
        key = self.data_dir / "identity" / "signing-key.pem"
        try:
            st = key.stat()
            version: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            version = None
        if not extra and version is not None and self._token is not None and self._token[0] == version:
            return self._token[1]
        out = run_cli("token", "--data-dir", str(self.data_dir), *extra, env=self.environ)
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip()
        if not extra:
            st = key.stat()
            self._token = ((st.st_ino, st.st_mtime_ns), token)
        return token

    def set_secret(self, uri: str, value: str, *extra: str) -> None:
        """``dpvault secrets set`` as a user would run it (the value on standard input)."""
        self.cli("secrets", "set", uri, *extra, input=value)

    def cli(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        """A store-backed ``dpvault`` command against this server's data dir and database, in this
        process (``run_cli``); a failure is an assertion naming its message."""
        extra = ["--database-url", self.database_url] if self.database_url else []
        out = run_cli(*args, "--data-dir", str(self.data_dir), *extra, input=input, env=self.environ)
        assert out.returncode == 0, (args[:2], out.stderr)
        return out

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return httpx.Client(base_url=self.base, verify=self.ssl_context(), headers=headers, timeout=30)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


# -- request bodies ---------------------------------------------------------------------------

SPEC = Path(__file__).resolve().parents[1] / "tests" / "spec"


def rg_path(rg: str, sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def vault_path(rg: str, vault: str, sub: str = SUB) -> str:
    return f"{rg_path(rg, sub)}/providers/Microsoft.DataProtection/backupVaults/{vault}"


def vault_body(location: str = "westus") -> dict[str, Any]:
    return {
        "location": location,
        "properties": {"storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}]},
    }


def policy_body(datasource: str = "Microsoft.DBforPostgreSQL/servers/databases") -> dict[str, Any]:
    return {
        "properties": {
            "objectType": "BackupPolicy",
            "datasourceTypes": [datasource],
            "policyRules": [
                {
                    "objectType": "AzureBackupRule",
                    "name": "BackupWeekly",
                    "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Full"},
                    "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                    "trigger": {
                        "objectType": "ScheduleBasedTriggerContext",
                        "schedule": {
                            "repeatingTimeIntervals": ["R/2021-08-15T06:30:00+00:00/P1W"],
                            "timeZone": "UTC",
                        },
                        "taggingCriteria": [
                            {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
                        ],
                    },
                },
                {
                    "objectType": "AzureRetentionRule",
                    "name": "Default",
                    "isDefault": True,
                    "lifecycles": [
                        {
                            "sourceDataStore": {
                                "objectType": "DataStoreInfoBase",
                                "dataStoreType": "VaultStore",
                            },
                            "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P3M"},
                        }
                    ],
                },
            ],
        }
    }


def instance_body(
    policy_id: str,
    *,
    database: str = "testdb",
    tags: dict[str, str] | None = None,
    secret_uri: str = "https://samplevault.vault.azure.net/secrets/credentials",
    validation: str = "ShallowValidation",
) -> dict[str, Any]:
    """The seed's request body, pointed at ``policy_id``."""
    server_id = "/subscriptions/f75d8d8b-6735-4697-82e1-1a7a3ff0d5d4/resourceGroups/viveksipgtest/providers/Microsoft.DBforPostgreSQL/servers/viveksipgtest"
    return {
        "tags": tags if tags is not None else {"key1": "val1"},
        "properties": {
            "objectType": "BackupInstance",
            "friendlyName": "harshitbi2",
            "dataSourceSetInfo": {
                "objectType": "DatasourceSet", "resourceID": server_id, "resourceName": "viveksipgtest",
                "resourceType": "Microsoft.DBforPostgreSQL/servers", "resourceUri": "", "resourceLocation": "",
                "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
            },
            "dataSourceInfo": {
                "objectType": "Datasource", "resourceID": f"{server_id}/databases/{database}", "resourceName": database,
                "resourceType": "Microsoft.DBforPostgreSQL/servers/databases", "resourceUri": "", "resourceLocation": "",
                "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
            },
            "datasourceAuthCredentials": {
                "secretStoreResource": {"uri": secret_uri, "secretStoreType": "AzureKeyVault"},
                "objectType": "SecretStoreBasedAuthCredentials",
            },
            "policyInfo": {
                "policyId": policy_id,
                "policyParameters": {
                    "dataStoreParametersList": [
                        {"objectType": "AzureOperationalStoreParameters", "dataStoreType": "OperationalStore",
                         "resourceGroupId": "/subscriptions/f75d8d8b-6735-4697-82e1-1a7a3ff0d5d4/resourceGroups/viveksipgtest"}
                    ]
                },
            },
            "validationType": validation,
        },
    }  # fmt: skip


def wait_operation(client: httpx.Client, url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll an Azure-AsyncOperation URL until the status is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"].lower() in ("succeeded", "failed", "canceled"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"operation still {body['status']} after {timeout}s")
        time.sleep(0.05)


class Env:
    """A vault with a policy, ready for backup instances."""

    def __init__(self, client: httpx.Client, rg: str | None = None, vault: str | None = None) -> None:
        self.client = client
        self.rg = rg or f"rg-{uuid.uuid4().hex[:8]}"
        self.vault = vault or f"vault-{uuid.uuid4().hex[:8]}"
        self.policy = "policy1"

    @property
    def vault_path(self) -> str:
        return vault_path(self.rg, self.vault)

    @property
    def policy_id(self) -> str:
        return f"{self.vault_path}/backupPolicies/{self.policy}"

    def instance_path(self, name: str) -> str:
        return f"{self.vault_path}/backupInstances/{name}"

    def create(self) -> Env:
        c = self.client
        r = c.put(f"{self.vault_path}?api-version={API}", json=vault_body())
        assert r.status_code == 201, r.text
        wait_operation(c, r.headers["Azure-AsyncOperation"])
        r = c.put(f"{self.policy_id}?api-version={API}", json=policy_body())
        assert r.status_code == 200, r.text
        return self

    def put_instance(self, name: str, body: dict[str, Any] | None = None, api: str = API) -> httpx.Response:
        return self.client.put(
            f"{self.instance_path(name)}?api-version={api}", json=body or instance_body(self.policy_id)
        )

    def create_instance(self, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.put_instance(name, body)
        assert r.status_code in (200, 201), r.text
        op = wait_operation(self.client, r.headers["Azure-AsyncOperation"])
        assert op["status"] == "Succeeded", op
        return self.client.get(f"{self.instance_path(name)}?api-version={API}").json()
