"""BackupVaultResource, PATCH input and name availability, as in the 2023-01-01 spec."""

from __future__ import annotations

from typing import Literal

from dpvault.model.schema import Base, SystemData


class StorageSetting(Base):
    datastoreType: Literal["ArchiveStore", "OperationalStore", "VaultStore"] | None = None
    type: Literal["GeoRedundant", "LocallyRedundant", "ZoneRedundant"] | None = None


class AzureMonitorAlertSettings(Base):
    alertsForAllJobFailures: Literal["Enabled", "Disabled"] | None = None


class MonitoringSettings(Base):
    azureMonitorAlertSettings: AzureMonitorAlertSettings | None = None


class SoftDeleteSettings(Base):
    state: Literal["Off", "On", "AlwaysOn"] | None = None
    retentionDurationInDays: float | None = None


class ImmutabilitySettings(Base):
    state: Literal["Disabled", "Unlocked", "Locked"] | None = None


class SecuritySettings(Base):
    softDeleteSettings: SoftDeleteSettings | None = None
    immutabilitySettings: ImmutabilitySettings | None = None


class CrossSubscriptionRestoreSettings(Base):
    state: Literal["Disabled", "PermanentlyDisabled", "Enabled"] | None = None


class FeatureSettings(Base):
    crossSubscriptionRestoreSettings: CrossSubscriptionRestoreSettings | None = None


class ResourceMoveDetails(Base):
    operationId: str | None = None
    startTimeUtc: str | None = None
    completionTimeUtc: str | None = None
    sourceResourcePath: str | None = None
    targetResourcePath: str | None = None


class BackupVault(Base):
    storageSettings: list[StorageSetting]
    monitoringSettings: MonitoringSettings | None = None
    securitySettings: SecuritySettings | None = None
    featureSettings: FeatureSettings | None = None
    provisioningState: str | None = None
    resourceMoveState: str | None = None
    resourceMoveDetails: ResourceMoveDetails | None = None
    isVaultProtectedByResourceGuard: bool | None = None


class DppIdentityDetails(Base):
    type: str | None = None
    principalId: str | None = None
    tenantId: str | None = None


class BackupVaultResource(Base, kw_only=True):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    location: str
    tags: dict[str, str] | None = None
    eTag: str | None = None
    identity: DppIdentityDetails | None = None
    systemData: SystemData | None = None
    properties: BackupVault


class PatchBackupVaultInput(Base):
    monitoringSettings: MonitoringSettings | None = None
    securitySettings: SecuritySettings | None = None
    featureSettings: FeatureSettings | None = None


class PatchResourceRequestInput(Base):
    identity: DppIdentityDetails | None = None
    properties: PatchBackupVaultInput | None = None
    tags: dict[str, str] | None = None


class CheckNameAvailabilityRequest(Base):
    name: str | None = None
    type: str | None = None
