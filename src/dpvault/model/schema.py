"""Spec types shared by several resources (2023-01-01). Field names are the JSON names, verbatim."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class Base(Struct, omit_defaults=True):
    """Every spec Struct: ``None`` means absent and is never written out."""


class SystemData(Base):
    createdBy: str | None = None
    createdByType: Literal["User", "Application", "ManagedIdentity", "Key"] | None = None
    createdAt: str | None = None
    lastModifiedBy: str | None = None
    lastModifiedByType: Literal["User", "Application", "ManagedIdentity", "Key"] | None = None
    lastModifiedAt: str | None = None


class InnerError(Base):
    additionalInfo: dict[str, str] | None = None
    code: str | None = None
    embeddedInnerError: InnerError | None = None


class UserFacingError(Base):
    code: str | None = None
    message: str | None = None
    target: str | None = None
    isRetryable: bool | None = None
    isUserError: bool | None = None
    properties: dict[str, str] | None = None
    recommendedAction: list[str] | None = None
    details: list[UserFacingError] | None = None
    innerError: InnerError | None = None


DataStoreTypes = Literal["OperationalStore", "VaultStore", "ArchiveStore"]


class DataStoreInfoBase(Base):
    dataStoreType: DataStoreTypes
    objectType: str
