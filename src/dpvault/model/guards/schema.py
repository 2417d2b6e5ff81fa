"""ResourceGuardResource, ResourceGuardProxyBaseResource and unlockDelete, as in the spec (2023-01-01;
unchanged through 2026-06-01)."""

from __future__ import annotations

from dpvault.model.schema import Base, SystemData


class ResourceGuardOperation(Base):
    vaultCriticalOperation: str | None = None
    requestResourceType: str | None = None


class ResourceGuard(Base):
    # Read-only but for the exclusion list; what a client sends besides it is ignored.
    provisioningState: str | None = None
    allowAutoApprovals: bool | None = None
    resourceGuardOperations: list[ResourceGuardOperation] | None = None
    vaultCriticalOperationExclusionList: list[str] | None = None
    description: str | None = None


class ResourceGuardResource(Base, kw_only=True):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    location: str
    tags: dict[str, str] | None = None
    eTag: str | None = None
    systemData: SystemData | None = None
    properties: ResourceGuard | None = None


class PatchResourceGuardInput(Base):
    tags: dict[str, str] | None = None


class ResourceGuardOperationDetail(Base):
    vaultCriticalOperation: str | None = None
    defaultResourceRequest: str | None = None


class ResourceGuardProxyBase(Base):
    resourceGuardResourceId: str | None = None
    resourceGuardOperationDetails: list[ResourceGuardOperationDetail] | None = None
    lastUpdatedTime: str | None = None
    description: str | None = None


class ResourceGuardProxyBaseResource(Base, kw_only=True):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    systemData: SystemData | None = None
    properties: ResourceGuardProxyBase


class UnlockDeleteRequest(Base):
    resourceGuardOperationRequests: list[str] | None = None
    resourceToBeDeleted: str | None = None
