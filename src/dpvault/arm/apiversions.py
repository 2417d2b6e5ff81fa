"""api-version rules: required everywhere, checked per provider, and repeated in every polling URL."""

from __future__ import annotations

from dpvault import errors

# Microsoft.Resources versions the stub resource-group API answers (ARM-native types).
RESOURCES_API_VERSIONS: tuple[str, ...] = (
    "2014-04-01",
    "2015-01-01",
    "2015-11-01",
    "2016-02-01",
    "2016-06-01",
    "2016-07-01",
    "2016-09-01",
    "2017-05-10",
    "2017-06-01",
    "2018-02-01",
    "2018-05-01",
    "2019-03-01",
    "2019-05-01",
    "2019-05-10",
    "2019-06-01",
    "2019-07-01",
    "2019-08-01",
    "2019-10-01",
    "2019-11-01",
    "2020-01-01",
    "2020-06-01",
    "2020-08-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-01-01",
    "2022-09-01",
    "2022-12-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-01-01",
    "2025-03-01",
    "2025-04-01",
)


def check_provider(version: str | None, supported: tuple[str, ...], resource_type: str, location: str) -> str:
    """Microsoft.DataProtection types: unsupported versions get NoRegisteredProviderFound (ARM-11)."""
    if version is None:
        raise errors.missing_api_version()
    if version not in supported:
        raise errors.no_registered_provider(version, resource_type, list(supported), location)
    return version


def check_resources(version: str | None) -> str:
    """ARM-native types (resource groups): unsupported versions get InvalidApiVersionParameter (ARM-12)."""
    if version is None:
        raise errors.missing_api_version()
    if version not in RESOURCES_API_VERSIONS:
        raise errors.invalid_api_version(version, list(RESOURCES_API_VERSIONS))
    return version
