"""BackupVaultResource, PATCH input and name availability: the 2023-01-01 spec, and the request
properties later versions added (``model/versions.py`` decides which version shows which)."""

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
    # "Enabled" is what the newer examples send; it means On (rules.security_change stores On).
    state: Literal["Off", "On", "AlwaysOn", "Enabled"] | None = None
    retentionDurationInDays: float | None = None


class ImmutabilitySettings(Base):
    state: Literal["Disabled", "Unlocked", "Locked"] | None = None


class CmkKeyVaultProperties(Base):
    keyUri: str | None = None


class CmkKekIdentity(Base):
    identityType: Literal["SystemAssigned", "UserAssigned"] | None = None
    identityId: str | None = None


class EncryptionSettings(Base):
    """Customer-managed keys (2024-03-01+): accepted and kept; dpvault does not encrypt with them."""

    state: Literal["Enabled", "Disabled", "Inconsistent"] | None = None
    keyVaultProperties: CmkKeyVaultProperties | None = None
    kekIdentity: CmkKekIdentity | None = None
    infrastructureEncryption: Literal["Enabled", "Disabled"] | None = None


class SecuritySettings(Base):
    softDeleteSettings: SoftDeleteSettings | None = None
    immutabilitySettings: ImmutabilitySettings | None = None
    encryptionSettings: EncryptionSettings | None = None  # 2024-03-01+


class CrossSubscriptionRestoreSettings(Base):
    state: Literal["Disabled", "PermanentlyDisabled", "Enabled"] | None = None


class CrossRegionRestoreSettings(Base):
    state: Literal["Disabled", "Enabled"] | None = None


class FeatureSettings(Base):
    crossSubscriptionRestoreSettings: CrossSubscriptionRestoreSettings | None = None
    crossRegionRestoreSettings: CrossRegionRestoreSettings | None = None  # 2023-05-01+


class CostManagementSettings(Base):
    granularityLevel: Literal["VaultLevel", "ProtectedItemLevel", "ProtectedItemWithParentTag"] | None = None


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
    costManagementSettings: CostManagementSettings | None = None  # 2026-06-01+
    # 2024-04-01+: MUA approvals of a critical change (request-only; never stored).
    resourceGuardOperationRequests: list[str] | None = None
    replicatedRegions: list[str] | None = None  # 2023-11-01+
    # read-only, computed per api-version (model/versions.py); accepted and ignored when PUT back
    secureScore: str | None = None
    bcdrSecurityLevel: str | None = None


class UserAssignedIdentity(Base):
    principalId: str | None = None
    clientId: str | None = None


class DppIdentityDetails(Base):
    type: str | None = None
    principalId: str | None = None
    tenantId: str | None = None
    userAssignedIdentities: dict[str, UserAssignedIdentity] | None = None  # 2023-05-01+


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
    costManagementSettings: CostManagementSettings | None = None
    resourceGuardOperationRequests: list[str] | None = None


class PatchResourceRequestInput(Base):
    identity: DppIdentityDetails | None = None
    properties: PatchBackupVaultInput | None = None
    tags: dict[str, str] | None = None


class CheckNameAvailabilityRequest(Base):
    name: str | None = None
    type: str | None = None
