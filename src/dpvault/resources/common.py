"""Rules every resource type shares: scope checks, tags, systemData, request fingerprints."""

from __future__ import annotations

import hashlib

import msgspec

from dpvault import errors
from dpvault.arm import apiversions, ids
from dpvault.arm.http import Call
from dpvault.clock import from_timestamp
from dpvault.model.schema import SystemData
from dpvault.services import Services

MAX_TAGS = 50
_TAG_KEY_FORBIDDEN = set("<>%&\\?/")


def check_provider_call(svc: Services, call: Call, resource_type: str) -> str:
    """The api-version check of every Microsoft.DataProtection route (the subscription in the
    path was checked, and authorized, by the app before any handler runs)."""
    return apiversions.check_provider(
        call.api_version, svc.settings.api_versions, resource_type, svc.settings.default_location
    )


def check_provider_since(svc: Services, call: Call, resource_type: str, first: str) -> str:
    """The api-version check of a route later versions added: older accepted versions get
    NoRegisteredProviderFound listing the versions that have it, as ARM answers for a resource type
    or action a version does not know."""
    supported = tuple(v for v in svc.settings.api_versions if v[:10] >= first)
    return apiversions.check_provider(
        call.api_version, supported, resource_type, svc.settings.default_location
    )


def check_tags(tags: dict[str, str] | None, path: str = "tags") -> dict[str, str] | None:
    if tags is None:
        return None
    if len(tags) > MAX_TAGS:
        raise errors.bad_request(
            f"At most {MAX_TAGS} tags are allowed; {len(tags)} were given.", code="InvalidTag", target=path
        )
    for key, value in tags.items():
        if not key or len(key) > 512 or any(ch in _TAG_KEY_FORBIDDEN for ch in key) or ids.has_control(key):
            raise errors.bad_request(
                f"The tag name '{ids.printable(key)}' is invalid: 1-512 characters, none of < > % & \\ ? /.",
                code="InvalidTagNameCharacters",
                target=f"{path}.{ids.printable(key)}",
            )
        if len(value) > 256:
            raise errors.bad_request(
                f"The value of tag '{ids.printable(key)}' exceeds 256 characters.",
                code="InvalidTag",
                target=f"{path}.{ids.printable(key)}",
            )
    return tags


def system_data(call: Call, now: float, previous: SystemData | None = None) -> SystemData:
    """systemData from the caller's token (created* kept from before, lastModified* now)."""
    header = call.headers.get("x-ms-arm-resource-system-data")
    if header:
        try:
            given = msgspec.json.decode(header.encode(), type=SystemData)
        except msgspec.MsgspecError:
            given = None
        if given is not None:
            return given
    stamp = from_timestamp(now)
    principal = call.principal
    who = principal.display if principal else "unknown"
    kind = principal.kind if principal else "User"
    return SystemData(
        createdBy=previous.createdBy if previous else who,
        createdByType=previous.createdByType if previous else kind,  # type: ignore[arg-type]
        createdAt=previous.createdAt if previous else stamp,
        lastModifiedBy=who,
        lastModifiedByType=kind,  # type: ignore[arg-type]
        lastModifiedAt=stamp,
    )


def fingerprint(*parts: object) -> str:
    """A stable hash of what a write asks for: an identical retry has the same fingerprint."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(msgspec.json.encode(part))
        digest.update(b"\x00")
    return digest.hexdigest()
