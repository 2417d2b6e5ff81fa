"""Decode request bodies into the spec's msgspec Structs the way the real service reads them.

The real service matches property names and enum values case-insensitively (the az CLI sends
``resourceId`` for the spec's ``resourceID``) and treats ``null`` as absent. msgspec is exact, so a
normaliser built once per Struct type from ``msgspec.inspect`` rewrites a decoded body into the
spec's spelling first; msgspec then checks types and required fields strictly. Every failure becomes
a 400 CloudError whose ``target`` is the JSON path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from dpvault import errors

T = TypeVar("T")
Normalizer = Callable[[Any, str], Any]

_decoder = msgspec.json.Decoder()


def _identity(value: Any, path: str) -> Any:
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fail(path: str, message: str) -> errors.ArmError:
    return errors.bad_request(message, target=path or "$")


_built: dict[type, Normalizer] = {}


def _struct_normalizer(info: mi.StructType) -> Normalizer:
    """One normaliser per Struct class; registered before its fields are built, so recursive types work."""
    if info.cls in _built:
        return _built[info.cls]
    fields: dict[str, tuple[str, Normalizer]] = {}

    def normalize(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            return value  # msgspec reports the type error with its path
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            if item is None:
                continue  # null means absent, as in the real service
            known = fields.get(raw_key.lower())
            if known is None:
                out[raw_key] = item  # unknown properties are ignored by msgspec
                continue
            name, sub = known
            out[name] = sub(item, _join(path, name))
        return out

    _built[info.cls] = normalize
    for f in info.fields:
        fields[f.encode_name.lower()] = (f.encode_name, _build(f.type))
    return normalize


def _tagged_union_normalizer(structs: list[mi.StructType]) -> Normalizer:
    tag_field = structs[0].tag_field
    assert tag_field is not None
    tag_key = tag_field.lower()
    by_tag = {str(s.tag).lower(): (str(s.tag), _struct_normalizer(s)) for s in structs}
    expected = ", ".join(sorted(str(s.tag) for s in structs))

    def normalize(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            return value
        tag_value = None
        for raw_key, item in value.items():
            if raw_key.lower() == tag_key:
                tag_value = item
                break
        target = _join(path, tag_field)
        if tag_value is None:
            raise _fail(target, f"The property '{target}' is required; expected one of: {expected}.")
        if not isinstance(tag_value, str) or tag_value.lower() not in by_tag:
            raise _fail(
                target,
                f"The value {msgspec.json.encode(tag_value).decode()} of '{target}' is not supported; "
                f"expected one of: {expected}.",
            )
        tag, sub = by_tag[tag_value.lower()]
        out = sub(value, path)
        out[tag_field] = tag
        return out

    return normalize


def _string_map(value: Any, path: str) -> Any:
    """Maps of strings (tags): each value must be a string, reported under its own key."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(v, str):
                target = _join(path, k)
                raise _fail(target, f"The value of '{target}' must be a string.")
    return value


def _literal_normalizer(values: tuple[Any, ...]) -> Normalizer:
    canonical = {v.lower(): v for v in values if isinstance(v, str)}
    expected = ", ".join(str(v) for v in values)

    def normalize(value: Any, path: str) -> Any:
        if isinstance(value, str):
            found = canonical.get(value.lower())
            if found is None:
                raise _fail(
                    path, f"The value '{value}' of '{path}' is not valid; expected one of: {expected}."
                )
            return found
        return value

    return normalize


def _build(tp: mi.Type) -> Normalizer:
    if isinstance(tp, mi.StructType):
        if tp.tag_field is not None:
            return _tagged_union_normalizer([tp])
        return _struct_normalizer(tp)
    if isinstance(tp, mi.UnionType):
        structs = [t for t in tp.types if isinstance(t, mi.StructType)]
        others = [t for t in tp.types if not isinstance(t, mi.StructType | mi.NoneType)]
        if structs and structs[0].tag_field is not None and not others:
            return _tagged_union_normalizer(structs)
        if len(structs) == 1 and not others:
            return _struct_normalizer(structs[0])
        if not structs and len(others) == 1:
            return _build(others[0])
        return _identity
    if isinstance(tp, mi.ListType):
        item = _build(tp.item_type)
        if item is _identity:
            return _identity

        def normalize_list(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                return value
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return normalize_list
    if isinstance(tp, mi.DictType):
        if isinstance(tp.value_type, mi.StrType):
            return _string_map
        inner = _build(tp.value_type)
        if inner is _identity:
            return _identity

        def normalize_dict(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                return value
            return {k: inner(v, _join(path, k)) for k, v in value.items()}

        return normalize_dict
    if isinstance(tp, mi.LiteralType):
        return _literal_normalizer(tp.values)
    return _identity


@cache
def normalizer_for(tp: type) -> Normalizer:
    return _build(mi.type_info(tp))


_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def _translate(exc: msgspec.ValidationError) -> errors.ArmError:
    match = _MSGSPEC_PATH.match(str(exc))
    assert match is not None
    message = match["msg"]
    path = (match["path"] or "").lstrip(".")
    missing = _MISSING.match(message)
    if missing:
        target = _join(path, missing["field"])
        return _fail(target, f"The property '{target}' is required.")
    message = message.replace("`", "'")
    where = f" at '{path}'" if path else ""
    return _fail(path, f"The request content was invalid{where}: {message}.")


def _has_nul(value: Any) -> bool:
    """Any string (key or value) with NUL: no Azure field takes one, and PostgreSQL text cannot."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def decode_json(body: bytes) -> Any:
    """Parse JSON; malformed input is a 400 InvalidRequestContent."""
    try:
        value = _decoder.decode(body)
        if b"\\u0000" in body and _has_nul(value):  # cheap filter first: NUL is rare
            raise errors.bad_request("The request content must not contain NUL (\\u0000) characters.")
        return value
    except msgspec.DecodeError as exc:
        reason = str(exc)
    except UnicodeDecodeError:
        reason = "it is not valid UTF-8"
    except RecursionError:
        reason = "it is nested too deeply"
    raise errors.bad_request(f"The request content was invalid and could not be deserialized: {reason}.")


def convert(value: Any, tp: type[T], path: str = "") -> T:
    """Normalise names and enum spellings, then convert strictly into ``tp``."""
    if not isinstance(value, dict):
        raise _fail(path, "The request content must be a JSON object.")
    try:
        normalized = normalizer_for(tp)(value, path)
        return msgspec.convert(normalized, tp, strict=True)
    except msgspec.ValidationError as exc:
        raise _translate(exc) from None
    except RecursionError:
        raise _fail(path, "The request content is nested too deeply.") from None


def decode(body: bytes, tp: type[T]) -> T:
    return convert(decode_json(body), tp)
