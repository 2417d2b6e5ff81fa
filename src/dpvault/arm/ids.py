"""Resource names, ids and the URLs handed to clients.

Names are checked before they reach anything else: ARM's character rules, no control characters.
ids follow ARM (the path, names unencoded); URLs put in headers or ``nextLink`` percent-encode names.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from dpvault import errors

_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FORBIDDEN_IN_RESOURCE = set("<>*%&:\\?/")
MAX_RESOURCE_NAME = 260


def key(value: str) -> str:
    """The case-insensitive identity of a name or id."""
    return value.lower()


def has_control(value: str) -> bool:
    return any(unicodedata.category(ch)[0] == "C" for ch in value)


def check_subscription(value: str) -> str:
    if not _GUID.match(value):
        raise errors.invalid_subscription(printable(value))
    return value


def check_resource_group(name: str) -> str:
    if not _RESOURCE_GROUP.match(name) or name.endswith(".") or has_control(name):
        raise errors.ArmError(
            400,
            "InvalidResourceGroupName",
            f"Resource group name '{printable(name)}' is invalid. It must be 1-90 characters of letters, "
            "digits, '-', '_', '.', '(' and ')', and must not end with '.'.",
        )
    return name


def check_resource_name(name: str, what: str) -> str:
    bad = (
        not name
        or len(name) > MAX_RESOURCE_NAME
        or has_control(name)
        or any(ch in _FORBIDDEN_IN_RESOURCE for ch in name)
        or name != name.strip()
        or name.endswith(".")
    )
    if bad:
        raise errors.ArmError(
            400,
            "InvalidResourceName",
            f"The {what} name '{printable(name)}' is invalid. Names are 1-{MAX_RESOURCE_NAME} characters, "
            "without control characters, leading or trailing spaces, a trailing '.', "
            "or any of < > * % & : \\ ? /.",
        )
    return name


_LOCATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ()-]{0,63}$")


def check_location(value: str, resource_type: str) -> str:
    """Azure locations are short names ("westus", "West US 2"); anything else is a 400."""
    if not _LOCATION.match(value.strip()):
        raise errors.ArmError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{printable(value)}' is not available for resource type '{resource_type}'. "
            "A location is up to 64 letters, digits, spaces and hyphens, such as 'westus'.",
            target="location",
        )
    return value


def printable(value: str, limit: int = 100) -> str:
    """A name made safe to quote in a message: control characters escaped, length capped."""
    shown = value.encode("unicode_escape").decode("ascii") if has_control(value) else value
    return shown if len(shown) <= limit else shown[:limit] + "..."


_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9\-._~()!$'*+,;=@]*")


def quote_segment(name: str) -> str:
    # Nearly every name needs no escaping: skip urllib's per-character work (on every 2xx reply).
    if _SAFE_SEGMENT.fullmatch(name):
        return name
    return quote(name, safe="-._~()!$'*+,;=@")


def resource_group_id(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def vault_id(sub: str, rg: str, vault: str) -> str:
    return f"{resource_group_id(sub, rg)}/providers/Microsoft.DataProtection/backupVaults/{vault}"


def child_id(sub: str, rg: str, vault: str, collection: str, name: str) -> str:
    return f"{vault_id(sub, rg, vault)}/{collection}/{name}"


def url_path(*segments: str) -> str:
    """Join path segments, percent-encoding each: what goes into Location, Azure-AsyncOperation, nextLink."""
    return "/" + "/".join(quote_segment(s) for s in segments)


_POLICY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.DataProtection/"
    r"backupVaults/(?P<vault>[^/]+)/backupPolicies/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)


def parse_policy_id(value: str) -> tuple[str, str, str, str] | None:
    """(subscription, resource group, vault, policy) from a policy id, or None if it is not one."""
    match = _POLICY_ID.match(value)
    if not match:
        return None
    return match["sub"], match["rg"], match["vault"], match["name"]
