"""Reading a recovery point for a restore: its bytes must match what was recorded when it was taken
*before* anything is written to a target."""

from __future__ import annotations

from dpvault.errors import UserError
from dpvault.store import RecoveryPointRow
from dpvault.vault.format import Manifest, PointManifest, UnsupportedFormatError
from dpvault.vault.keys import KeyUnavailableError
from dpvault.vault.points import PointDamagedError, RecoveryPoints


def corrupted(rp_id: str) -> UserError:
    return UserError(
        "UserErrorRecoveryPointCorrupted",
        f"The data of recovery point '{rp_id}' does not match the SHA-256 recorded when it was taken; "
        "nothing was written to the target.",
        "Restore another recovery point; run `dpvault verify` to check the others.",
    )


def format_unsupported(rp_id: str, exc: UnsupportedFormatError) -> UserError:
    return UserError(
        "UserErrorRecoveryPointFormatUnsupported",
        f"Recovery point '{rp_id}' is stored in vault format {exc.found!r}, which this dpvault cannot read; "
        "nothing was written to the target.",
        "Restore with the dpvault version that wrote the point (or a newer one).",
    )


async def check_point(points: RecoveryPoints, rp: RecoveryPointRow) -> Manifest | PointManifest:
    """What a reader checks before it reads (and checks) the bytes: the manifest and the row agree.
    Returns the checked manifest."""
    try:
        return await points.check_manifest(rp)
    except PointDamagedError:
        raise corrupted(rp.id) from None
    except UnsupportedFormatError as exc:
        raise format_unsupported(rp.id, exc) from None
    except KeyUnavailableError as exc:
        raise key_unavailable(rp.id, exc) from None


async def point_files(points: RecoveryPoints, rp: RecoveryPointRow) -> list[tuple[str, str]]:
    """(name, SHA-256) of each file of the point, its manifest checked (a format-1 point: its one
    archive, named ""); UserError like :func:`check_point`."""
    files = getattr(await check_point(points, rp), "files", None)
    if not files:
        return [("", rp.sha256)]
    return [(f.name, f.sha256) for f in files]


def key_unavailable(rp_id: str, exc: Exception) -> UserError:
    return UserError(
        "UserErrorVaultKeyUnavailable",
        f"Recovery point '{rp_id}' cannot be read: {exc}; nothing was written to the target.",
        "Restore the vault's key-encryption key (the data dir's identity/vault.kek, DPVAULT_VAULT_KEK, or the "
        "key stored with dpvault keys set).",
    )


async def verify_point(points: RecoveryPoints, rp: RecoveryPointRow) -> Manifest | PointManifest:
    """The point's manifest once its data re-read to its recorded SHA-256; UserError otherwise."""
    try:
        return await points.verify(rp)
    except PointDamagedError:
        raise corrupted(rp.id) from None
    except KeyUnavailableError as exc:
        raise key_unavailable(rp.id, exc) from None
    except UnsupportedFormatError as exc:
        raise format_unsupported(rp.id, exc) from None
