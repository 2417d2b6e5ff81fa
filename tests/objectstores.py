"""Real object-storage servers for tests: Azurite (Azure Blob) and moto (S3), each on a free loopback port.

``Azurite`` runs ``azurite-blob`` from the npm package installed project-locally in ``<repo>/.npm``
(``scripts/test`` installs it; so does the first use here, with ``npm install --prefix``). ``MotoS3``
runs moto's threaded server in this process. Both are context managers, stop their server at exit, and
give the variables ``dpvault.datastores.open_datastore`` reads (``environ()``) to reach them.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
NPM_PREFIX = ROOT / ".npm"
AZURITE_VERSION = "azurite@3"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented development key: public, the same in every installation.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering on port {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


def azurite_binary() -> Path:
    """``azurite-blob`` from ``<repo>/.npm``, installed there on first use."""
    binary = NPM_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("Azurite needs npm (apt-get install npm)")
    NPM_PREFIX.mkdir(exist_ok=True)
    with open(NPM_PREFIX / ".install.lock", "w") as lock:  # xdist workers: one installs, the rest wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            subprocess.run(
                [npm, "install", "--prefix", str(NPM_PREFIX), AZURITE_VERSION, "--no-audit", "--no-fund"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
    return binary


class Azurite:
    """An Azurite blob server, data in a temp dir; ``make_container`` creates a container in it."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def environ(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def start(self) -> Self:
        self._dir = tempfile.mkdtemp(prefix="dpvault-azurite-")
        self.port = free_port()
        self._run()
        return self

    def _run(self) -> None:
        cmd = [str(azurite_binary()), "--blobHost", "127.0.0.1", "--blobPort", str(self.port)]
        cmd += [
            "--location",
            str(self._dir),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self._proc)

    def outage(self) -> None:
        """Stop the server (an outage): nothing answers on its port until :meth:`recover`. SIGTERM,
        not SIGKILL: Azurite saves its metadata at intervals, and a kill loses recent containers."""
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(10)

    def recover(self) -> None:
        """The server back on the same port, with the same data."""
        self._run()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def make_container(self, name: str) -> str:
        """Create a container (Put Container, signed with the account's shared key)."""
        self._request("PUT", f"/{name}", {"restype": "container"})
        return name

    def _request(self, method: str, path: str, query: dict[str, str]) -> None:
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}{path}" + "".join(
            f"\n{k}:{v}" for k, v in sorted(query.items())
        )
        # VERB, Content-Encoding, -Language, -Length (empty when 0), -MD5, -Type, Date, If-* (4), Range
        fields = [method, "", "", "", "", "application/octet-stream", "", "", "", "", "", ""]
        to_sign = "\n".join(fields) + "\n" + canonical_headers + resource
        mac = hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {AZURITE_ACCOUNT}:{base64.b64encode(mac).decode()}"
        url = f"{self.endpoint}{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
        headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(url, method=method, headers=headers, data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


class MotoS3:
    """moto's S3 server, threaded in this process; ``make_bucket`` creates a bucket via boto3."""

    ACCESS_KEY = "testing-key-id"
    SECRET_KEY = "testing-secret-key"  # moto accepts any credentials
    REGION = "us-east-1"

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_REGION": self.REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> Self:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        _wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.REGION,
                aws_access_key_id=self.ACCESS_KEY,
                aws_secret_access_key=self.SECRET_KEY,
            )
        return self._client

    def make_bucket(self, name: str, *, object_lock: bool = False) -> str:
        """Create a bucket; ``object_lock`` makes it an Object Lock bucket (versioned, as S3 requires)."""
        self.client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def incomplete_uploads(self, bucket: str) -> int:
        """How many multipart uploads the bucket holds that were neither completed nor aborted."""
        return len(self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def unique(prefix: str) -> str:
    """A container or bucket name no other test uses (3-63 lower-case letters, digits and ``-``)."""
    return f"{prefix}-{os.urandom(6).hex()}"


__all__ = ["Azurite", "MotoS3", "free_port", "unique"]
