"""AzureBackupRestoreRequest and its restore targets, as in the 2023-01-01 spec."""

from __future__ import annotations

from typing import Literal

from dpvault.model.instances.schema import (
    Datasource,
    DatasourceSet,
    IdentityDetails,
    SecretStoreBasedAuthCredentials,
)
from dpvault.model.schema import Base

SourceDataStoreType = Literal["ArchiveStore", "SnapshotStore", "OperationalStore", "VaultStore"]


class RestoreTargetInfo(Base, tag_field="objectType", tag="RestoreTargetInfo"):
    recoveryOption: Literal["FailIfExists"]
    datasourceInfo: Datasource
    datasourceSetInfo: DatasourceSet | None = None
    datasourceAuthCredentials: SecretStoreBasedAuthCredentials | None = None
    restoreLocation: str | None = None


class TargetDetails(Base):
    filePrefix: str
    restoreTargetLocationType: Literal["Invalid", "AzureBlobs", "AzureFiles"]
    url: str
    targetResourceArmId: str | None = None


class RestoreFilesTargetInfo(Base, tag_field="objectType", tag="RestoreFilesTargetInfo"):
    recoveryOption: Literal["FailIfExists"]
    targetDetails: TargetDetails
    restoreLocation: str | None = None


class ItemLevelRestoreTargetInfo(Base, tag_field="objectType", tag="ItemLevelRestoreTargetInfo"):
    recoveryOption: Literal["FailIfExists"]
    datasourceInfo: Datasource
    restoreCriteria: list[dict[str, object]] | None = None
    datasourceSetInfo: DatasourceSet | None = None
    datasourceAuthCredentials: SecretStoreBasedAuthCredentials | None = None
    restoreLocation: str | None = None


TargetInfo = RestoreTargetInfo | RestoreFilesTargetInfo | ItemLevelRestoreTargetInfo


class AzureBackupRecoveryPointBasedRestoreRequest(
    Base, tag_field="objectType", tag="AzureBackupRecoveryPointBasedRestoreRequest"
):
    restoreTargetInfo: TargetInfo
    sourceDataStoreType: SourceDataStoreType
    recoveryPointId: str
    sourceResourceId: str | None = None
    resourceGuardOperationRequests: list[str] | None = None  # 2024-04-01+ (MUA)
    identityDetails: IdentityDetails | None = None  # 2023-05-01+


class AzureBackupRestoreWithRehydrationRequest(
    Base, tag_field="objectType", tag="AzureBackupRestoreWithRehydrationRequest"
):
    restoreTargetInfo: TargetInfo
    sourceDataStoreType: SourceDataStoreType
    recoveryPointId: str
    rehydrationPriority: Literal["Invalid", "High", "Standard"]
    rehydrationRetentionDuration: str
    sourceResourceId: str | None = None
    resourceGuardOperationRequests: list[str] | None = None  # 2024-04-01+ (MUA)
    identityDetails: IdentityDetails | None = None  # 2023-05-01+


class AzureBackupRecoveryTimeBasedRestoreRequest(
    Base, tag_field="objectType", tag="AzureBackupRecoveryTimeBasedRestoreRequest"
):
    restoreTargetInfo: TargetInfo
    sourceDataStoreType: SourceDataStoreType
    recoveryPointTime: str
    sourceResourceId: str | None = None
    resourceGuardOperationRequests: list[str] | None = None  # 2024-04-01+ (MUA)
    identityDetails: IdentityDetails | None = None  # 2023-05-01+


RestoreRequest = (
    AzureBackupRecoveryPointBasedRestoreRequest
    | AzureBackupRestoreWithRehydrationRequest
    | AzureBackupRecoveryTimeBasedRestoreRequest
)


class ValidateRestoreRequestObject(Base):
    restoreRequestObject: RestoreRequest


class SyncBackupInstanceRequest(Base):
    syncType: Literal["Default", "ForceResync"] | None = None


class CrossRegionRestoreDetails(Base):
    sourceRegion: str
    sourceBackupInstanceId: str


class CrossRegionRestoreRequestObject(Base):
    """crossRegionRestore and validateCrossRegionRestore (2023-11-01+)."""

    restoreRequestObject: RestoreRequest
    crossRegionRestoreDetails: CrossRegionRestoreDetails


class FetchSecondaryRPsRequestParameters(Base):
    sourceRegion: str | None = None
    sourceBackupInstanceId: str | None = None


class CrossRegionRestoreJobRequest(Base):
    sourceRegion: str
    sourceBackupVaultId: str
    jobId: str


class CrossRegionRestoreJobsRequest(Base):
    sourceRegion: str
    sourceBackupVaultId: str
