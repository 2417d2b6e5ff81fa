"""BaseBackupPolicyResource and the BackupPolicy tree, as in the 2023-01-01 spec."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dpvault.model.schema import Base, DataStoreInfoBase, SystemData


class AzureBackupParams(Base, tag_field="objectType", tag="AzureBackupParams"):
    backupType: str


class RetentionTag(Base):
    tagName: str
    id: str | None = None
    eTag: str | None = None


class Day(Base):
    date: int | None = None
    isLast: bool | None = None


class ScheduleBasedBackupCriteria(Base, tag_field="objectType", tag="ScheduleBasedBackupCriteria"):
    absoluteCriteria: (
        list[Literal["AllBackup", "FirstOfDay", "FirstOfMonth", "FirstOfWeek", "FirstOfYear"]] | None
    ) = None
    daysOfMonth: list[Day] | None = None
    daysOfTheWeek: (
        list[Literal["Friday", "Monday", "Saturday", "Sunday", "Thursday", "Tuesday", "Wednesday"]] | None
    ) = None
    monthsOfYear: (
        list[
            Literal[
                "April",
                "August",
                "December",
                "February",
                "January",
                "July",
                "June",
                "March",
                "May",
                "November",
                "October",
                "September",
            ]
        ]
        | None
    ) = None
    scheduleTimes: list[str] | None = None
    weeksOfTheMonth: list[Literal["First", "Fourth", "Last", "Second", "Third"]] | None = None


class TaggingCriteria(Base):
    isDefault: bool
    tagInfo: RetentionTag
    taggingPriority: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # int64 in the spec
    criteria: list[ScheduleBasedBackupCriteria] | None = None


class BackupSchedule(Base):
    repeatingTimeIntervals: list[str]
    timeZone: str | None = None


class ScheduleBasedTriggerContext(Base, tag_field="objectType", tag="ScheduleBasedTriggerContext"):
    schedule: BackupSchedule
    taggingCriteria: list[TaggingCriteria]


class AdhocBasedTaggingCriteria(Base):
    tagInfo: RetentionTag | None = None


class AdhocBasedTriggerContext(Base, tag_field="objectType", tag="AdhocBasedTriggerContext"):
    taggingCriteria: AdhocBasedTaggingCriteria


class AzureBackupRule(Base, tag_field="objectType", tag="AzureBackupRule"):
    name: str
    dataStore: DataStoreInfoBase
    trigger: ScheduleBasedTriggerContext | AdhocBasedTriggerContext
    backupParameters: AzureBackupParams | None = None


class AbsoluteDeleteOption(Base, tag_field="objectType", tag="AbsoluteDeleteOption"):
    duration: str


class CopyOnExpiryOption(Base, tag_field="objectType", tag="CopyOnExpiryOption"):
    pass


class CustomCopyOption(Base, tag_field="objectType", tag="CustomCopyOption"):
    duration: str | None = None


class ImmediateCopyOption(Base, tag_field="objectType", tag="ImmediateCopyOption"):
    pass


class TargetCopySetting(Base):
    copyAfter: CopyOnExpiryOption | CustomCopyOption | ImmediateCopyOption
    dataStore: DataStoreInfoBase


class SourceLifeCycle(Base):
    deleteAfter: AbsoluteDeleteOption
    sourceDataStore: DataStoreInfoBase
    targetDataStoreCopySettings: list[TargetCopySetting] | None = None


class AzureRetentionRule(Base, tag_field="objectType", tag="AzureRetentionRule"):
    name: str
    lifecycles: list[SourceLifeCycle]
    isDefault: bool | None = None


class BackupPolicy(Base, tag_field="objectType", tag="BackupPolicy"):
    datasourceTypes: list[str]
    policyRules: list[AzureBackupRule | AzureRetentionRule]


class BaseBackupPolicyResource(Base, kw_only=True):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    systemData: SystemData | None = None
    properties: BackupPolicy
