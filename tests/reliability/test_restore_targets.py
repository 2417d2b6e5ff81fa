"""Restore targets (issue 15, item 5): names and paths the file system cannot take are a 400 before
anything is written, and a files restore that fails leaves nothing behind (no ``.partial``, no dump
without its checksum file); what a crash leaves, the job's retry (or its giving up) removes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dpvault.jobs.worker import Claimed
from dpvault.model import payloads
from dpvault.protection.restore_files import FileRestorer
from dpvault.store import RecoveryPointRow
from tests.integration.test_restore_rerun import Restorer, point  # noqa: F401 - the fixture
from tests.support import API, Env, Server

NAME_MAX = 255
# The longest name a files restore creates: ".<prefix>.dump.sha256.<job id>.partial"
LONGEST_PREFIX = NAME_MAX - len("..dump.sha256.") - 36 - len(".partial")


def _target(url: str, prefix: str = "nightly") -> dict[str, Any]:
    return {
        "objectType": "RestoreFilesTargetInfo",
        "recoveryOption": "FailIfExists",
        "targetDetails": {"url": url, "filePrefix": prefix, "restoreTargetLocationType": "AzureFiles"},
    }


def _request(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "sourceDataStoreType": "VaultStore",
        "recoveryPointId": "no-such-point",
        "restoreTargetInfo": target,
    }


def _post(client: httpx.Client, env: Env, target: dict[str, Any], *, validate: bool) -> httpx.Response:
    action = "validateRestore" if validate else "restore"
    body = {"restoreRequestObject": _request(target)} if validate else _request(target)
    return client.post(f"{env.instance_path('bi')}/{action}?api-version={API}", json=body)


@pytest.mark.parametrize("validate", [False, True], ids=["restore", "validateRestore"])
def test_names_and_paths_the_file_system_cannot_take_are_a_400(
    server: Server, client: httpx.Client, env: Env, validate: bool
) -> None:
    env.create_instance("bi")
    root = server.data_dir / "restores"
    base = "restoreRequestObject." if validate else ""

    def refused(target: dict[str, Any], code: str) -> str:
        r = _post(client, env, target, validate=validate)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == code, error
        assert error["target"] == f"{base}restoreTargetInfo.targetDetails", error
        return error["message"]

    # a path component over NAME_MAX
    message = refused(_target((root / ("d" * 256)).as_uri()), "UserErrorInvalidRestoreTarget")
    assert "256 bytes" in message and "255" in message
    # a path over PATH_MAX (every component allowed)
    deep = root.joinpath(*["d" * 200] * 21)
    assert "over the file system's limit of 4095" in refused(
        _target(deep.as_uri()), "UserErrorInvalidRestoreTarget"
    )
    # a directory that fits, whose restored files' paths would not
    near = root.joinpath(*["d" * 200] * 19)
    near = near / ("e" * (4095 - len(str(near)) - 60))
    assert len(os.fsencode(str(near))) < 4095
    assert "restored files' paths" in refused(_target(near.as_uri()), "UserErrorInvalidRestoreTarget")
    # a prefix the syntax allows (200 characters) whose checksum file's staging name is too long
    message = refused(_target(root.as_uri(), "p" * 200), "UserErrorInvalidFilePrefix")
    assert f"at most {LONGEST_PREFIX} bytes" in message
    # the longest prefix that fits passes the target checks (and the request fails on its point)
    r = _post(client, env, _target(root.as_uri(), "p" * LONGEST_PREFIX), validate=validate)
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorRecoveryPointNotFound", r.text
    # nothing was created for any of them
    assert not any(p.name.startswith(("d" * 10, "p" * 10)) for p in root.iterdir())


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _restorer_on(restorer: Restorer, root: Path) -> FileRestorer:
    return FileRestorer(restorer.jobs.files.points, [root])


@pytest.mark.parametrize("inodes", [3, 4], ids=["dump-link-fails", "checksum-file-fails"])
def test_a_files_restore_that_fails_leaves_nothing_behind(
    point: tuple[Restorer, RecoveryPointRow, str],  # noqa: F811 - the fixture
    small_fs: Callable[..., Path],
    inodes: int,
) -> None:
    """The target file system runs out of inodes (tmpfs nr_inodes) when the dump is linked into
    place, or when the checksum file is written: the attempt fails, and nothing of it stays; once
    there is room again the retry succeeds."""
    restorer, rp, _ = point
    fs = small_fs("64m", inodes=inodes)
    files = _restorer_on(restorer, fs)  # the root holds one inode, the target directory another
    directory = fs / "out"
    target = {"targetDetails": {"url": directory.as_uri(), "filePrefix": "nightly"}}
    job = str(uuid.uuid4())
    with pytest.raises(OSError):
        asyncio.run(files.to_files(rp, target, owner=job))
    assert _leftovers(directory) == []
    subprocess.run(["mount", "-o", "remount,nr_inodes=100", str(fs)], check=True)
    assert asyncio.run(files.to_files(rp, target, owner=job))["SHA256"] == rp.sha256
    files.release(target, job)
    assert _leftovers(directory) == ["nightly.dump", "nightly.dump.sha256"]


def test_a_files_restore_that_runs_out_of_space_midway_leaves_nothing(
    point: tuple[Restorer, RecoveryPointRow, str],  # noqa: F811 - the fixture
    small_fs: Callable[..., Path],
) -> None:
    restorer, rp, _ = point
    fs = small_fs(f"{max(4096, rp.size // 2 // 4096 * 4096)}")
    files = _restorer_on(restorer, fs)
    directory = fs / "out"
    with pytest.raises(OSError):
        asyncio.run(
            files.to_files(rp, {"targetDetails": {"url": directory.as_uri(), "filePrefix": "n"}}, owner="j")
        )
    assert _leftovers(directory) == []


def test_what_a_crash_leaves_the_retry_or_the_giving_up_removes(
    point: tuple[Restorer, RecoveryPointRow, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    restorer, rp, _ = point
    directory = tmp_path / "restores" / "crashed"
    directory.mkdir(parents=True)
    target = {
        "objectType": "RestoreFilesTargetInfo",
        "targetDetails": {"url": directory.as_uri(), "filePrefix": "n"},
    }
    job = str(uuid.uuid4())
    # a crash mid-copy: a half-written staging file, and a checksum file's staging file
    (directory / f".n.dump.{job}.partial").write_bytes(b"half a dump")
    (directory / f".n.dump.sha256.{job}.partial").write_text("half a line")
    assert restorer.jobs.files.check(target) is None  # validateRestore: the names are free
    asyncio.run(restorer.to_files(rp, target, owner=job))
    restorer.release_files(target, job)
    assert _leftovers(directory) == ["n.dump", "n.dump.sha256"]
    assert (directory / "n.dump").read_bytes() == (restorer.vault / rp.object_key).read_bytes()

    # a crash after the files were written, then the job gives up (its completion never recorded):
    # nothing of it stays; another job's files are never touched
    other = str(uuid.uuid4())
    asyncio.run(restorer.to_files(rp, {**target, "targetDetails": {**target["targetDetails"], "filePrefix": "m"}},
                                  owner=other))  # fmt: skip
    assert f".m.dump.{other}.partial" in _leftovers(directory)
    claimed = Claimed(1, "worker", 5, payloads.Restore(job=other, instance="i", rp=rp.id,
                      target={**target, "targetDetails": {**target["targetDetails"], "filePrefix": "m"}}))  # fmt: skip
    asyncio.run(restorer.jobs.give_up(claimed, "its worker stopped while running it"))
    assert _leftovers(directory) == ["n.dump", "n.dump.sha256"]
