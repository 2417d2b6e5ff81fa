"""What makes a backup policy valid, beyond its JSON shape, how it is stored, and which of its rules
applies."""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.model.policies.schedule import (
    ScheduleError,
    parse_datetime,
    parse_duration,
    parse_repeating_interval,
    zone,
)
from dpvault.model.policies.schema import (
    AdhocBasedTriggerContext,
    AzureBackupRule,
    AzureRetentionRule,
    BackupPolicy,
    BaseBackupPolicyResource,
    RetentionTag,
    ScheduleBasedTriggerContext,
    TaggingCriteria,
)

_decoder = msgspec.json.Decoder(BaseBackupPolicyResource)


def decode_policy(body: bytes) -> BaseBackupPolicyResource:
    return _decoder.decode(body)


def backup_rule(policy: BackupPolicy, name: str | None) -> AzureBackupRule | None:
    """The backup rule ``name`` (case-insensitive), or the first one when no name is given."""
    rules = [r for r in policy.policyRules if isinstance(r, AzureBackupRule)]
    if name is None:
        return rules[0] if rules else None
    return next((r for r in rules if r.name.lower() == name.lower()), None)


def default_retention_tag(policy: BackupPolicy) -> str:
    """The name of the default retention rule (an adhoc backup without a tag override gets it)."""
    return next(
        (r.name for r in policy.policyRules if isinstance(r, AzureRetentionRule) and r.isDefault), "Default"
    )


def _bad(message: str, target: str) -> errors.ArmError:
    return errors.bad_request(message, code="InvalidBackupPolicy", target=target)


def validate(policy: BackupPolicy, base: str = "properties") -> None:
    if not policy.datasourceTypes or any(not t.strip() for t in policy.datasourceTypes):
        raise _bad("The policy must name at least one datasource type.", f"{base}.datasourceTypes")
    rules_path = f"{base}.policyRules"
    if not policy.policyRules:
        raise _bad("The policy must have at least one rule.", rules_path)
    seen: set[str] = set()
    retention_names: set[str] = set()
    defaults = 0
    for i, rule in enumerate(policy.policyRules):
        if not rule.name.strip():
            raise _bad("Rule names must not be empty.", f"{rules_path}[{i}].name")
        if rule.name.lower() in seen:
            raise _bad(f"The rule name '{rule.name}' is used twice.", f"{rules_path}[{i}].name")
        seen.add(rule.name.lower())
        if isinstance(rule, AzureRetentionRule):
            retention_names.add(rule.name.lower())
            defaults += 1 if rule.isDefault else 0
            _validate_retention(rule, f"{rules_path}[{i}]")
    if defaults != 1:
        raise _bad(
            f"The policy must have exactly one AzureRetentionRule with isDefault true; it has {defaults}.",
            rules_path,
        )
    for i, rule in enumerate(policy.policyRules):
        if isinstance(rule, AzureBackupRule):
            _validate_backup_rule(rule, f"{rules_path}[{i}]", retention_names)


def _validate_retention(rule: AzureRetentionRule, path: str) -> None:
    if not rule.lifecycles:
        raise _bad("A retention rule needs at least one lifecycle.", f"{path}.lifecycles")
    for j, lifecycle in enumerate(rule.lifecycles):
        where = f"{path}.lifecycles[{j}]"
        try:
            parse_duration(lifecycle.deleteAfter.duration)
        except ScheduleError as exc:
            raise _bad(f"deleteAfter.duration: {exc}.", f"{where}.deleteAfter.duration") from None
        for k, copy in enumerate(lifecycle.targetDataStoreCopySettings or []):
            duration = getattr(copy.copyAfter, "duration", None)
            if duration is not None:
                try:
                    parse_duration(duration)
                except ScheduleError as exc:
                    raise _bad(
                        f"copyAfter.duration: {exc}.",
                        f"{where}.targetDataStoreCopySettings[{k}].copyAfter.duration",
                    ) from None


def _check_tag(tag: RetentionTag, retention_names: set[str], where: str) -> None:
    if tag.tagName.lower() not in retention_names:
        raise _bad(
            f"The tag '{tag.tagName}' has no AzureRetentionRule of the same name.", f"{where}.tagInfo.tagName"
        )


def _validate_backup_rule(rule: AzureBackupRule, path: str, retention_names: set[str]) -> None:
    if rule.backupParameters is not None and not rule.backupParameters.backupType.strip():
        raise _bad("backupType must not be empty.", f"{path}.backupParameters.backupType")
    trigger = rule.trigger
    where = f"{path}.trigger"
    if isinstance(trigger, AdhocBasedTriggerContext):
        if trigger.taggingCriteria.tagInfo is not None:
            _check_tag(trigger.taggingCriteria.tagInfo, retention_names, f"{where}.taggingCriteria")
        return
    assert isinstance(trigger, ScheduleBasedTriggerContext)
    intervals = trigger.schedule.repeatingTimeIntervals
    if not intervals:
        raise _bad(
            "The schedule needs at least one repeating time interval.",
            f"{where}.schedule.repeatingTimeIntervals",
        )
    if trigger.schedule.timeZone is not None and not trigger.schedule.timeZone.strip():
        raise _bad("timeZone must not be empty when given.", f"{where}.schedule.timeZone")
    tz = zone(trigger.schedule.timeZone)
    for j, text in enumerate(intervals):
        try:
            parse_repeating_interval(text).in_zone(tz)
        except ScheduleError as exc:
            raise _bad(f"{exc}.", f"{where}.schedule.repeatingTimeIntervals[{j}]") from None
        except OverflowError:
            raise _bad(
                f"'{text}' starts too close to the limits of the calendar (years 1 to 9999) for the "
                "policy's time zone.",
                f"{where}.schedule.repeatingTimeIntervals[{j}]",
            ) from None
    _validate_tagging(trigger.taggingCriteria, f"{where}.taggingCriteria", retention_names)


def _validate_tagging(criteria: list[TaggingCriteria], path: str, retention_names: set[str]) -> None:
    if not criteria:
        raise _bad("At least one tagging criterion (the default) is required.", path)
    defaults = [c for c in criteria if c.isDefault]
    if len(defaults) != 1:
        raise _bad(f"Exactly one tagging criterion must have isDefault true; {len(defaults)} do.", path)
    names: set[str] = set()
    for j, item in enumerate(criteria):
        where = f"{path}[{j}]"
        if item.tagInfo.tagName.lower() in names:
            raise _bad(f"The tag '{item.tagInfo.tagName}' is used twice.", f"{where}.tagInfo.tagName")
        names.add(item.tagInfo.tagName.lower())
        _check_tag(item.tagInfo, retention_names, where)
        if item.taggingPriority < 0:
            raise _bad("taggingPriority must not be negative.", f"{where}.taggingPriority")
        for k, crit in enumerate(item.criteria or []):
            cwhere = f"{where}.criteria[{k}]"
            for m, day in enumerate(crit.daysOfMonth or []):
                if not day.isLast and (day.date is None or not 1 <= day.date <= 28):
                    raise _bad(
                        "daysOfMonth.date must be 1-28 (or isLast true).", f"{cwhere}.daysOfMonth[{m}].date"
                    )
            for m, moment in enumerate(crit.scheduleTimes or []):
                try:
                    parse_datetime(moment)
                except ScheduleError as exc:
                    raise _bad(f"{exc}.", f"{cwhere}.scheduleTimes[{m}]") from None


def with_tag_ids(policy: BackupPolicy) -> BackupPolicy:
    """Fill the read-only ``tagInfo.id`` as the service does: ``"<tagName>_"``."""
    rules = []
    for rule in policy.policyRules:
        if isinstance(rule, AzureBackupRule):
            trigger = rule.trigger
            if isinstance(trigger, ScheduleBasedTriggerContext):
                criteria = [
                    msgspec.structs.replace(c, tagInfo=_tag(c.tagInfo)) for c in trigger.taggingCriteria
                ]
                trigger = msgspec.structs.replace(trigger, taggingCriteria=criteria)
            elif trigger.taggingCriteria.tagInfo is not None:
                trigger = msgspec.structs.replace(
                    trigger,
                    taggingCriteria=msgspec.structs.replace(
                        trigger.taggingCriteria, tagInfo=_tag(trigger.taggingCriteria.tagInfo)
                    ),
                )
            rule = msgspec.structs.replace(rule, trigger=trigger)
        rules.append(rule)
    return msgspec.structs.replace(policy, policyRules=rules)


def _tag(tag: RetentionTag) -> RetentionTag:
    return msgspec.structs.replace(tag, id=f"{tag.tagName}_", eTag=None)
