"""BackupInstanceResource and its tree: the 2023-01-01 spec, and the request properties later
versions added (``model/versions.py`` decides which version shows which)."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from dpvault.model.schema import Base, SystemData, UserFacingError


class Datasource(Base):
    resourceID: str
    datasourceType: str | None = None
    objectType: str | None = None
    resourceLocation: str | None = None
    resourceName: str | None = None
    resourceType: str | None = None
    resourceUri: str | None = None
    resourceProperties: dict[str, Any] | None = None  # 2023-05-01+ (DefaultResourceProperties)


class DatasourceSet(Datasource):
    pass


class AzureOperationalStoreParameters(Base, tag_field="objectType", tag="AzureOperationalStoreParameters"):
    dataStoreType: Literal["OperationalStore", "VaultStore", "ArchiveStore"]
    resourceGroupId: str | None = None


class BlobBackupDatasourceParameters(Base, tag_field="objectType", tag="BlobBackupDatasourceParameters"):
    containersList: list[str]


class KubernetesClusterBackupDatasourceParameters(
    Base, tag_field="objectType", tag="KubernetesClusterBackupDatasourceParameters"
):
    snapshotVolumes: bool
    includeClusterScopeResources: bool
    includedNamespaces: list[str] | None = None
    excludedNamespaces: list[str] | None = None
    includedResourceTypes: list[str] | None = None
    excludedResourceTypes: list[str] | None = None
    labelSelectors: list[str] | None = None
    backupHookReferences: list[dict[str, Any]] | None = None  # 2023-05-01+
    includedVolumeTypes: list[str] | None = None  # 2025-07-01+


# Datasource parameters of later versions, accepted and kept (dpvault backs up none of these types).
class AdlsBlobBackupDatasourceParameters(
    Base, tag_field="objectType", tag="AdlsBlobBackupDatasourceParameters"
):
    containersList: list[str]


class BlobBackupDatasourceParametersForAutoProtection(
    Base, tag_field="objectType", tag="BlobBackupDatasourceParametersForAutoProtection"
):
    autoProtectionSettings: dict[str, Any]


class AdlsBlobBackupDatasourceParametersForAutoProtection(
    Base, tag_field="objectType", tag="AdlsBlobBackupDatasourceParametersForAutoProtection"
):
    autoProtectionSettings: dict[str, Any]


class GenericBackupDatasourceParameters(
    Base, tag_field="objectType", tag="GenericBackupDatasourceParameters"
):
    resourceSelectors: list[str]


class PostgreSqlFlexibleServerBackupDatasourceParameters(
    Base, tag_field="objectType", tag="PostgreSqlFlexibleServerBackupDatasourceParameters"
):
    backupSolutionType: str | None = None


BackupDatasourceParameters = (
    BlobBackupDatasourceParameters
    | KubernetesClusterBackupDatasourceParameters
    | AdlsBlobBackupDatasourceParameters
    | BlobBackupDatasourceParametersForAutoProtection
    | AdlsBlobBackupDatasourceParametersForAutoProtection
    | GenericBackupDatasourceParameters
    | PostgreSqlFlexibleServerBackupDatasourceParameters
)


class PolicyParameters(Base):
    dataStoreParametersList: list[AzureOperationalStoreParameters] | None = None
    backupDatasourceParametersList: list[BackupDatasourceParameters] | None = None


class PolicyInfo(Base):
    policyId: str
    policyVersion: str | None = None
    policyParameters: PolicyParameters | None = None


class SecretStoreResource(Base):
    secretStoreType: Literal["Invalid", "AzureKeyVault"]
    uri: str | None = None
    # Never stored or returned: responses carry "value": null, as the real service does.
    value: str | UnsetType | None = UNSET


class SecretStoreBasedAuthCredentials(Base, tag_field="objectType", tag="SecretStoreBasedAuthCredentials"):
    secretStoreResource: SecretStoreResource | None = None


class ProtectionStatusDetails(Base):
    status: (
        Literal[
            "ConfiguringProtection",
            "ConfiguringProtectionFailed",
            "ProtectionConfigured",
            "ProtectionStopped",
            "SoftDeleted",
            "SoftDeleting",
        ]
        | None
    ) = None
    errorDetails: UserFacingError | None = None


CurrentProtectionState = Literal[
    "Invalid",
    "NotProtected",
    "ConfiguringProtection",
    "ProtectionConfigured",
    "BackupSchedulesSuspended",
    "RetentionSchedulesSuspended",
    "ProtectionStopped",
    "ProtectionError",
    "ConfiguringProtectionFailed",
    "SoftDeleting",
    "SoftDeleted",
    "UpdatingProtection",
]


class IdentityDetails(Base):
    """2023-05-01+: which identity the service uses for the datasource (kept; dpvault uses secrets)."""

    useSystemAssignedIdentity: bool | None = None
    userAssignedIdentityArmUrl: str | None = None


class DeletionInfo(Base):
    """A soft-deleted instance's dates (read-only)."""

    deletionTime: str | None = None
    billingEndDate: str | None = None
    scheduledPurgeTime: str | None = None
    deleteActivityID: str | None = None


class BackupInstance(Base):
    dataSourceInfo: Datasource
    policyInfo: PolicyInfo
    objectType: str
    friendlyName: str | None = None
    dataSourceSetInfo: DatasourceSet | None = None
    datasourceAuthCredentials: SecretStoreBasedAuthCredentials | None = None
    validationType: Literal["ShallowValidation", "DeepValidation"] | None = None
    identityDetails: IdentityDetails | None = None  # 2023-05-01+
    # 2024-04-01+: MUA approvals of a critical change (request-only; never stored)
    resourceGuardOperationRequests: list[str] | None = None
    # Read-only: accepted (a GET body may be PUT back) but decided by the service.
    provisioningState: str | None = None
    protectionStatus: ProtectionStatusDetails | None = None
    currentProtectionState: CurrentProtectionState | None = None
    protectionErrorDetails: UserFacingError | None = None
    deletionInfo: DeletionInfo | None = None  # only on a DeletedBackupInstance


class BackupInstanceResource(Base, kw_only=True):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    tags: dict[str, str] | None = None
    systemData: SystemData | None = None
    properties: BackupInstance


class ValidateForBackupRequest(Base):
    backupInstance: BackupInstance


class AdhocBackupTriggerOption(Base):
    retentionTagOverride: str | None = None


class AdHocBackupRuleOptions(Base):
    ruleName: str
    triggerOption: AdhocBackupTriggerOption | None = None


class TriggerBackupRequest(Base):
    backupRuleOptions: AdHocBackupRuleOptions


class GuardedActionRequest(Base):
    """The optional body of stopProtection and suspendBackups (2024-04-01+)."""

    resourceGuardOperationRequests: list[str] | None = None


class ValidateForModifyBackupRequest(Base):
    backupInstance: BackupInstance


class FindRestorableTimeRangesRequest(Base):
    sourceDataStoreType: Literal["OperationalStore", "VaultStore", "ArchiveStore"]
    startTime: str | None = None
    endTime: str | None = None


class RehydrationRequest(Base):
    recoveryPointId: str
    rehydrationRetentionDuration: str
    rehydrationPriority: Literal["Invalid", "High", "Standard"] | None = None
