"""One error family: every failure a client can see is an :class:`ArmError`, rendered as a CloudError.

Factories name the ARM error codes so handlers never spell codes or status numbers inline.
"""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    """A failure with an HTTP status and an ARM CloudError body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(message: str, *, code: str = "InvalidRequestContent", target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target=target)


def missing_api_version() -> ArmError:
    return ArmError(
        400,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


def no_registered_provider(version: str, resource_type: str, supported: list[str], location: str) -> ArmError:
    return ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location}' and API version '{version}' "
        f"for type '{resource_type}'. The supported api-versions are '{', '.join(supported)}'. "
        f"The supported locations are '{location}'.",
    )


def invalid_api_version(version: str, supported: list[str]) -> ArmError:
    return ArmError(
        400,
        "InvalidApiVersionParameter",
        f"The api-version '{version}' is invalid. The supported versions are '{','.join(supported)}'.",
    )


def invalid_subscription(value: str) -> ArmError:
    return ArmError(
        400,
        "InvalidSubscriptionId",
        f"The provided subscription identifier '{value}' is malformed or invalid.",
    )


def resource_group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def resource_not_found(type_and_name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{type_and_name}' under resource group '{resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def operation_not_found(operation_id: str) -> ArmError:
    return ArmError(404, "OperationNotFound", f"The operation '{operation_id}' was not found.")


def conflict(message: str, *, code: str = "Conflict") -> ArmError:
    return ArmError(409, code, message)


def unauthenticated(code: str, message: str, description: str) -> ArmError:
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common", '
        f'error="invalid_token", error_description="{description}"'
    )
    return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})
