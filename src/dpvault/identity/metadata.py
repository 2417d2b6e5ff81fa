"""Cloud metadata: ``GET /metadata/endpoints`` describes this server as an Azure cloud, so that
``az cloud register --endpoint-resource-manager`` and Terraform's ``metadata_host`` can use it.

Three shapes, by api-version: ``2022-09-01`` and newer (Terraform, go-azure-sdk) one object;
``2019-05-01``..``2022-08-31`` (``ARM_CLOUD_METADATA_URL``) an array of clouds; older (Azure
Stack style, what ``az cloud register`` asks for) ``{galleryEndpoint, graphEndpoint, portalEndpoint,
authentication}``. Answers without a bearer token.
"""

from __future__ import annotations

from typing import Any

from dpvault.arm.http import Call, Reply


def cloud(base: str) -> dict[str, Any]:
    root = base.rstrip("/") + "/"
    login = base.rstrip("/")  # no trailing slash: MSAL and az join it with "/{tenant}"
    return {
        "name": "dpvault",
        "portal": root,
        "resourceManager": root,
        "authentication": {
            "loginEndpoint": login,
            "audiences": [root, "https://management.azure.com/", "https://management.core.windows.net/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "graph": root,
        "graphAudience": root,
        "microsoftGraphResourceId": root,
        "activeDirectoryDataLake": root,
        "batch": root,
        "gallery": root,
        "media": root,
        "sqlManagement": root,
        "vmImageAliasDoc": "",
        "appInsightsResourceId": root,
        "appInsightsTelemetryChannelResourceId": root,
        "attestationResourceId": root,
        "synapseAnalyticsResourceId": root,
        "logAnalyticsResourceId": root,
        "ossrDbmsResourceId": root,
        "suffixes": {
            "acrLoginServer": ".azurecr.io",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "keyvaultDns": ".vault.azure.net",
            "mhsmDns": ".managedhsm.azure.net",
            "mysqlServerEndpoint": ".mysql.database.azure.com",
            "postgresqlServerEndpoint": ".postgres.database.azure.com",
            "sqlServerHostname": ".database.windows.net",
            "storage": "core.windows.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "synapseAnalytics": ".dev.azuresynapse.net",
            "attestationEndpoint": ".attest.azure.net",
        },
    }


async def endpoints(call: Call) -> Reply:
    version = call.api_version or "2022-09-01"
    doc = cloud(call.base_url)
    if version >= "2022-09-01":
        return Reply.json(200, doc)
    if version >= "2019-05-01":
        return Reply.json(200, [doc])
    return Reply.json(
        200,
        {
            "galleryEndpoint": doc["gallery"],
            "graphEndpoint": doc["graph"],
            "portalEndpoint": doc["portal"],
            "authentication": {
                "loginEndpoint": doc["authentication"]["loginEndpoint"],
                "audiences": doc["authentication"]["audiences"],
            },
        },
    )
