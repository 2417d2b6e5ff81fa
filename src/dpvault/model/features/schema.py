"""FeatureValidationRequest (checkFeatureSupport), as in the spec."""

from __future__ import annotations

from typing import Literal

from dpvault.model.schema import Base


class FeatureValidationRequest(Base, tag_field="objectType", tag="FeatureValidationRequest"):
    featureType: Literal["Invalid", "DataSourceType"] | None = None
    featureName: str | None = None


# Datasource types of Azure Backup vaults, as Azure spells them; the ones no engine serves are
# answered NotSupported (an instance of one is accepted, shallowly validated, never backed up).
KNOWN_DATASOURCE_TYPES = (
    "Microsoft.DBforPostgreSQL/servers/databases",
    "Microsoft.DBforPostgreSQL/flexibleServers",
    "Microsoft.DBforMySQL/flexibleServers",
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/adlsBlobServices",
    "Microsoft.Compute/disks",
    "Microsoft.ContainerService/managedClusters",
)
