"""Reading a recovery point for a restore: its bytes must match what was recorded when it was taken
*before* anything is written to a target."""

from __future__ import annotations

from dpvault.errors import UserError
from dpvault.store import RecoveryPointRow
from dpvault.vault.format import Manifest, UnsupportedFormatError
from dpvault.vault.points import PointDamagedError, RecoveryPoints


def corrupted(rp_id: str) -> UserError:
    return UserError(
        "UserErrorRecoveryPointCorrupted",
        f"The data of recovery point '{rp_id}' does not match the SHA-256 recorded when it was taken; "
        "nothing was written to the target.",
        "Restore another recovery point; run `dpvault verify` to check the others.",
    )


async def verify_point(points: RecoveryPoints, rp: RecoveryPointRow) -> Manifest:
    """The point's manifest once its archive re-hashed to its recorded SHA-256; UserError otherwise."""
    try:
        return await points.verify(rp)
    except PointDamagedError:
        raise corrupted(rp.id) from None
    except UnsupportedFormatError as exc:
        raise UserError(
            "UserErrorRecoveryPointFormatUnsupported",
            f"Recovery point '{rp.id}' is stored in vault format {exc.found!r}, which this dpvault cannot read; "
            "nothing was written to the target.",
            "Restore with the dpvault version that wrote the point (or a newer one).",
        ) from None
