"""``POST /subscriptions/{s}/providers/Microsoft.DataProtection/locations/{l}/checkFeatureSupport``
(synchronous): for ``featureType: DataSourceType``, each datasource type with its support status:
GenerallyAvailable for the types an engine backs up, NotSupported for the others (an instance of
one is accepted and shallowly validated, but never backed up)."""

from __future__ import annotations

from dpvault import errors
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model.features.schema import KNOWN_DATASOURCE_TYPES, FeatureValidationRequest
from dpvault.protection.service import Protection
from dpvault.resources.common import check_provider_call
from dpvault.services import Services
from dpvault.types import canonical_datasource_type


class FeatureRoutes:
    def __init__(self, svc: Services, protection: Protection) -> None:
        self.svc = svc
        self.protection = protection

    def _status(self, datasource_type: str) -> str:
        served = self.protection.engines.for_type(datasource_type) is not None
        return "GenerallyAvailable" if served else "NotSupported"

    async def check(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, "locations/checkFeatureSupport")
        request = decode(await call.json_body() or b"", FeatureValidationRequest)
        if request.featureType != "DataSourceType":
            raise errors.bad_request(
                f"The featureType '{request.featureType}' is not supported; expected DataSourceType.",
                target="featureType",
            )
        if request.featureName:
            names = [request.featureName]
        else:
            served = {canonical_datasource_type(t): t for t in KNOWN_DATASOURCE_TYPES}
            names = [served.get(t, t) for t in self.protection.engines.types]
            names += [t for t in KNOWN_DATASOURCE_TYPES if t not in names]
        features = [
            {"featureName": name, "supportStatus": self._status(name), "exposureControlledFeatures": []}
            for name in names
        ]
        return Reply.json(
            200,
            {
                "objectType": "FeatureValidationResponse",
                "featureType": "DataSourceType",
                "features": features,
            },
        )
