"""How the process allocates memory: glibc's malloc tuned for backups' large, short-lived buffers.

glibc raises its mmap threshold each time a large block is freed, up to 32 MiB; after that, the MiB
buffers a backup streams through (chunks, blobs, packs) come from the heap and stay in the process
when freed. A backup of ~600 MB then grew the server's RSS by ~75 MiB; with the threshold fixed at
128 KiB (which also turns the dynamic adjustment off) by ~36 MiB (bench/backup.py). Other C
libraries are left alone: this only applies where glibc is the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3
THRESHOLD = 128 * 1024


def tune() -> bool:
    """Fix glibc's mmap threshold; True if it was set (False elsewhere: musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):
        return False
