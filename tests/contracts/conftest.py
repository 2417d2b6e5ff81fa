"""The contract suites' servers: one Azurite and one moto S3 per session (per xdist worker)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.objectstores import Azurite, MotoS3


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    try:
        server = Azurite().start()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"Azurite is not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server
