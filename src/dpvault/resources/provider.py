"""Provider-level routes: ``GET /providers/Microsoft.DataProtection/operations`` (ARM-47)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from dpvault.arm import apiversions
from dpvault.arm.http import Call, Reply
from dpvault.services import Services


@cache
def _operations_body() -> bytes:
    # The provider's operation list as published in the spec's Operations/List.json example.
    return (Path(__file__).parent / "provider_operations.json").read_bytes()


class ProviderRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def operations(self, call: Call) -> Reply:
        apiversions.check_provider(
            call.api_version, self.svc.settings.api_versions, "operations", self.svc.settings.default_location
        )
        return Reply.json(200, _operations_body())
