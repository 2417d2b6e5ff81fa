"""Blob restore criteria (``engines/blobs/criteria.py``): which blobs of a point a request selects."""

from __future__ import annotations

from typing import Any

import pytest

from dpvault.engines.blobs.criteria import select
from dpvault.engines.blobs.listing import BlobRecord, Listing
from dpvault.errors import UserError

LISTINGS = {
    c: Listing(c, [BlobRecord(name=n, size=1, etag="e", file=f"{c}/{n}") for n in ("a/1", "b/2", "c/3")])
    for c in ("docs", "docs-archive", "docs2", "media")
}


def _range(low: str, high: str) -> dict[str, Any]:
    return {
        "objectType": "ItemLevelRestoreTargetInfo",
        "restoreCriteria": [
            {
                "objectType": "RangeBasedItemLevelRestoreCriteria",
                "minMatchingValue": low,
                "maxMatchingValue": high,
            }
        ],
    }


def _picked(target: dict[str, Any]) -> list[str]:
    return sorted(f"{p.source}/{p.record.name}" for p in select(target, LISTINGS))


def test_a_range_of_a_bare_container_name_is_that_container_only() -> None:
    assert _picked(_range("docs", "docs")) == ["docs/a/1", "docs/b/2", "docs/c/3"]


def test_a_range_is_inclusive_and_its_upper_bound_a_prefix() -> None:
    assert _picked(_range("docs/b", "docs/c")) == ["docs/b/2", "docs/c/3"]
    assert _picked(_range("docs/a/1", "docs/a/1")) == ["docs/a/1"]
    # across containers: everything between, lexicographically, as Azure ranges are
    assert _picked(_range("docs2/c", "media/a")) == ["docs2/c/3", "media/a/1"]


@pytest.mark.parametrize(
    ("low", "high", "code"),
    [
        ("docs/c", "docs/a", "UserErrorInvalidRestoreCriteria"),  # min > max
        ("", "docs", "UserErrorInvalidRestoreCriteria"),
        ("nope/a", "nope/b", "UserErrorRestoreItemNotFound"),
        ("docs/x", "docs/y", "UserErrorNoItemsToRestore"),
    ],
)
def test_ranges_that_cannot_select_are_user_errors(low: str, high: str, code: str) -> None:
    with pytest.raises(UserError) as error:
        select(_range(low, high), LISTINGS)
    assert error.value.code == code


def test_a_prefix_criterion_stays_in_its_container() -> None:
    target = {
        "objectType": "ItemLevelRestoreTargetInfo",
        "restoreCriteria": [
            {
                "objectType": "ItemPathBasedRestoreCriteria",
                "itemPath": "docs",
                "subItemPathPrefix": ["a/", "c"],
            }
        ],
    }
    assert _picked(target) == ["docs/a/1", "docs/c/3"]
