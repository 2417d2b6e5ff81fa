"""Paged lists: ``{"value": [...], "nextLink": ...}`` with an opaque ``$skipToken`` (ARM-44)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, encode

MAX_TOP = 1000
MAX_PK = 2**31 - 1


def invalid_token(token: str) -> errors.ArmError:
    return errors.bad_request(
        f"The $skipToken '{ids.printable(token)}' is not valid.", code="InvalidSkipToken"
    )


def cursor(call: Call) -> str | None:
    """The cursor text inside the request's ``$skipToken`` (None without one); 400 if it is not ours."""
    token = call.query.get("$skiptoken")
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode() + b"==").decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise invalid_token(token) from None


def window(call: Call, default_size: int) -> tuple[int, int]:
    """(after_pk, page size) from ``$skipToken`` and ``$top``."""
    text = cursor(call)
    after = 0
    if text is not None:
        after = int(text) if text.isascii() and text.isdigit() else -1
        if not 0 <= after <= MAX_PK:
            raise invalid_token(call.query["$skiptoken"])
    size = default_size
    top = call.query.get("$top")
    if top is not None:
        if not (top.isascii() and top.isdigit()) or not 1 <= int(top) <= MAX_TOP:
            raise errors.bad_request(
                f"The $top value must be an integer from 1 to {MAX_TOP}.", code="InvalidTop"
            )
        size = int(top)
    return after, size


def reply_rows(
    call: Call, rows: Sequence[Any], size: int, view: Callable[[bytes], bytes] | None = None
) -> bytes:
    """The list body for rows read with ``limit=size + 1`` (the extra row says another page follows);
    ``view`` turns a stored body into what the request's api-version shows."""
    more = len(rows) > size
    rows = rows[:size]
    items = [r.body for r in rows] if view is None else [view(r.body) for r in rows]
    return body(call, items, str(rows[-1].pk) if more else None)


def body(call: Call, items: Sequence[bytes], next_cursor: str | None) -> bytes:
    """The list body from already-encoded items; ``next_cursor`` (read back by ``cursor``) set when
    another page may follow."""
    out = b'{"value":[' + b",".join(items) + b"]"
    if next_cursor is not None:
        token = base64.urlsafe_b64encode(next_cursor.encode()).decode().rstrip("=")
        query = [
            (k, v)
            for k, v in parse_qsl(call.query_string, keep_blank_values=True)
            if k.lower() != "$skiptoken"
        ]
        query.append(("$skipToken", token))
        link = call.base_url + ids.url_path(*call.path.strip("/").split("/")) + "?" + urlencode(query)
        out += b',"nextLink":' + encode(link)
    return out + b"}"
