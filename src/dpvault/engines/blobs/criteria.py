"""Which blobs a restore request selects, and where they go: pure rules over a point's listings.

- ``RestoreTargetInfo``: every container of the point, under its own name.
- ``ItemLevelRestoreTargetInfo`` with ``restoreCriteria``:
  - ``ItemPathBasedRestoreCriteria``: ``itemPath`` names a container (as ``az dataprotection restore
    initialize-for-item-recovery --container-list`` writes it; a leading ``/`` or a container's full
    ARM id is accepted too); ``subItemPathPrefix`` limits it to blobs whose names start with one of
    the prefixes (none: the whole container); ``renameTo`` restores it into that container instead.
  - ``RangeBasedItemLevelRestoreCriteria``: ``minMatchingValue`` / ``maxMatchingValue`` are
    ``<container>/<blob name prefix>``; a blob is selected when ``min <= <container>/<name>`` and
    its path is ``<= max`` or starts with ``max`` (a prefix range, as ``--from-prefix-pattern`` /
    ``--to-prefix-pattern`` mean it).
Several criteria add up; a blob two criteria send to the same place is restored once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dpvault.engines.blobs.listing import BlobRecord, Listing
from dpvault.errors import UserError

CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class Placement:
    """One blob of the point and the container it is restored into (same blob name)."""

    source: str  # the container it was backed up from
    record: BlobRecord
    target: str


def _bad(message: str) -> UserError:
    return UserError(
        "UserErrorInvalidRestoreCriteria",
        message,
        "Name containers of the recovery point in restoreCriteria (itemPath, or minMatchingValue/maxMatchingValue "
        "as <container>/<prefix>); renameTo must be a valid container name.",
    )


def _container_of(item_path: str) -> str:
    path = item_path.strip().rstrip("/")
    if "/containers/" in path.lower():
        path = path[path.lower().rindex("/containers/") + len("/containers/") :]
    return path.lstrip("/")


def _check_name(name: str, what: str) -> str:
    if not CONTAINER.match(name):
        raise _bad(
            f"{what} '{name[:100]}' is not a container name (3-63 lower-case letters, digits and hyphens)."
        )
    return name


def check_shape(target: dict[str, Any]) -> None:
    """What a request's criteria must be whatever the point holds (said at the request, 400)."""
    if target.get("objectType") != "ItemLevelRestoreTargetInfo":
        return
    criteria = target.get("restoreCriteria")
    if not isinstance(criteria, list) or not criteria:
        raise _bad("ItemLevelRestoreTargetInfo needs at least one restoreCriteria item.")
    for item in criteria:
        kind = item.get("objectType") if isinstance(item, dict) else None
        if kind == "ItemPathBasedRestoreCriteria":
            if not _container_of(str(item.get("itemPath") or "")):
                raise _bad("ItemPathBasedRestoreCriteria needs itemPath, the container to restore.")
            if item.get("renameTo"):
                _check_name(str(item["renameTo"]), "renameTo")
            prefixes = item.get("subItemPathPrefix")
            if prefixes is not None and (
                not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes)
            ):
                raise _bad("subItemPathPrefix must be a list of strings.")
        elif kind == "RangeBasedItemLevelRestoreCriteria":
            _range(item)
        else:
            raise _bad(
                f"restoreCriteria objectType '{str(kind)[:60]}' is not one a blob restore takes: "
                "ItemPathBasedRestoreCriteria or RangeBasedItemLevelRestoreCriteria."
            )


def _range(item: dict[str, Any]) -> tuple[str, str]:
    """A range criterion's bounds, ``<container>/<prefix>``; a bare container name is that whole
    container (``docs`` is ``docs/``: it must not reach ``docs-archive/…`` or ``docs2/…``)."""
    low, high = (str(item.get(k) or "") for k in ("minMatchingValue", "maxMatchingValue"))
    low, high = (v if "/" in v or not v else f"{v}/" for v in (low, high))
    if not low or not high or low > high:
        raise _bad(
            "minMatchingValue and maxMatchingValue must both be given, as <container>/<prefix>, min <= max."
        )
    return low, high


def select(target: dict[str, Any], listings: dict[str, Listing]) -> list[Placement]:
    """The blobs the request restores, in a stable order; UserError for criteria that name what the
    point does not hold, or that select nothing."""
    if target.get("objectType") != "ItemLevelRestoreTargetInfo":
        chosen = [Placement(c, r, c) for c, listing in listings.items() for r in listing.blobs]
        return _nonempty(chosen, "The recovery point holds no blobs.")
    check_shape(target)
    criteria = target["restoreCriteria"]
    picked: dict[tuple[str, str], Placement] = {}
    for item in criteria:
        for placement in _one(item, listings):
            picked.setdefault((placement.target, placement.record.name), placement)
    return _nonempty(list(picked.values()), "The restoreCriteria select no blob of the recovery point.")


def _one(item: dict[str, Any], listings: dict[str, Listing]) -> Iterable[Placement]:
    kind = item.get("objectType")
    if kind == "ItemPathBasedRestoreCriteria":
        container = _container_of(str(item.get("itemPath") or ""))
        if container not in listings:
            raise UserError(
                "UserErrorRestoreItemNotFound",
                f"The recovery point holds no container '{container[:100]}'; it holds: {', '.join(sorted(listings))}.",
                "Name a container of the recovery point in itemPath.",
            )
        rename = item.get("renameTo")
        target = _check_name(str(rename), "renameTo") if rename else container
        prefixes = item.get("subItemPathPrefix") or []
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise _bad("subItemPathPrefix must be a list of strings.")
        return [
            Placement(container, r, target)
            for r in listings[container].blobs
            if not prefixes or any(r.name.startswith(p) for p in prefixes)
        ]
    if kind == "RangeBasedItemLevelRestoreCriteria":
        low, high = _range(item)
        for value in (low, high):
            if _container_of(value.split("/", 1)[0]) not in listings:
                raise UserError(
                    "UserErrorRestoreItemNotFound",
                    f"'{value[:100]}' names no container of the recovery point; it holds: {', '.join(sorted(listings))}.",
                    "Give minMatchingValue and maxMatchingValue as <container>/<prefix>.",
                )
        return [
            Placement(c, r, c)
            for c, listing in listings.items()
            for r in listing.blobs
            if low <= f"{c}/{r.name}" and (f"{c}/{r.name}" <= high or f"{c}/{r.name}".startswith(high))
        ]
    raise _bad(
        f"restoreCriteria objectType '{str(kind)[:60]}' is not one a blob restore takes: "
        "ItemPathBasedRestoreCriteria or RangeBasedItemLevelRestoreCriteria."
    )


def _nonempty(chosen: list[Placement], message: str) -> list[Placement]:
    if not chosen:
        raise UserError(
            "UserErrorNoItemsToRestore", message, "Choose other restoreCriteria or another recovery point."
        )
    return chosen
