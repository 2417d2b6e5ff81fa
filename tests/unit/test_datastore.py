"""The local datastore's sweep removes dead staging files and unreferenced objects, and leaves
alone files dpvault never writes (an NFS .nfs* placeholder, an operator's note) instead of failing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dpvault.datastores import LocalDatastore


def test_sweep_ignores_files_that_are_not_objects(tmp_path: Path) -> None:
    store = LocalDatastore(tmp_path / "vault")
    store.write_bytes("v/i/kept.dump", b"kept")
    store.write_bytes("v/i/orphan.dump", b"orphan")
    strays = [store.root / "v" / "i" / ".nfs0000123", store.root / "README for Operators.txt"]
    for stray in strays:
        stray.write_text("not an object")
    old = time.time() - 3600
    for path in [*strays, store.path("v/i/kept.dump"), store.path("v/i/orphan.dump")]:
        os.utime(path, (old, old))
    assert sorted(store.keys()) == ["v/i/kept.dump", "v/i/orphan.dump"]
    removed = store.sweep(stale_after=60, referenced={"v/i/kept.dump"})
    assert removed == 1
    assert store.exists("v/i/kept.dump") and not store.exists("v/i/orphan.dump")
    assert all(stray.exists() for stray in strays)
