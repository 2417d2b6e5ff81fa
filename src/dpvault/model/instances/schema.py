"""BackupInstanceResource and its tree, as in the 2023-01-01 spec."""

from __future__ import annotations

from typing import Literal

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


class PolicyParameters(Base):
    dataStoreParametersList: list[AzureOperationalStoreParameters] | None = None
    backupDatasourceParametersList: (
        list[BlobBackupDatasourceParameters | KubernetesClusterBackupDatasourceParameters] | None
    ) = None


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


class BackupInstance(Base):
    dataSourceInfo: Datasource
    policyInfo: PolicyInfo
    objectType: str
    friendlyName: str | None = None
    dataSourceSetInfo: DatasourceSet | None = None
    datasourceAuthCredentials: SecretStoreBasedAuthCredentials | None = None
    validationType: Literal["ShallowValidation", "DeepValidation"] | None = None
    # Read-only: accepted (a GET body may be PUT back) but decided by the service.
    provisioningState: str | None = None
    protectionStatus: ProtectionStatusDetails | None = None
    currentProtectionState: CurrentProtectionState | None = None
    protectionErrorDetails: UserFacingError | None = None


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
