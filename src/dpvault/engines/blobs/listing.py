"""What a blob backup records of each container: a listing that is consistent with the bytes stored
(every blob's properties are those of the version whose content the point holds).

A point of the blob engine holds, per container, one file per blob (``<container>/<blob name>``;
container names have no ``/``) and the listing ``<container>.listing`` (container names have no
``.`` either, so the two never collide), a JSON document::

    {"format": 1, "container": "c1", "metadata": {...},
     "blobs": [{"name": "a/b.txt", "size": 5, "etag": "0x8D...", "file": "c1/a/b.txt",
                "contentType": "text/plain", "contentMd5": "XUFAKrxLKna5cZ2REBfFkg==",
                "metadata": {"k": "v"}, "tags": {"t": "1"}, "tier": "Hot"}, ...]}
"""

from __future__ import annotations

import msgspec

LISTING_FORMAT = 1
SUFFIX = ".listing"


class BlobRecord(msgspec.Struct, omit_defaults=True, rename="camel"):
    name: str
    size: int
    etag: str
    file: str
    content_type: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None
    content_md5: str | None = None  # base64, as Azure shows it
    metadata: dict[str, str] = {}
    tags: dict[str, str] = {}
    tier: str | None = None


class Listing(msgspec.Struct, omit_defaults=True):
    container: str
    blobs: list[BlobRecord]
    metadata: dict[str, str] = {}
    format: int = LISTING_FORMAT


def listing_name(container: str) -> str:
    return f"{container}{SUFFIX}"


def blob_file(container: str, blob: str) -> str:
    return f"{container}/{blob}"


def is_listing(name: str) -> bool:
    return "/" not in name and name.endswith(SUFFIX)


def encode(listing: Listing) -> bytes:
    return msgspec.json.encode(listing)


def decode(data: bytes) -> Listing:
    listing = msgspec.json.decode(data, type=Listing)
    if listing.format != LISTING_FORMAT:
        raise ValueError(f"unknown blob listing format {listing.format!r}")
    return listing
