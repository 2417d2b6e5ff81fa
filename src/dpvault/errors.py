"""One error family: every failure dpvault reports is a :class:`DpvaultError`.

- :class:`ArmError`: a request (or a long-running operation) failed; rendered as a CloudError with an
  HTTP status. Factories name the ARM error codes so handlers never spell codes or statuses inline.
- :class:`UserError`: work (a backup, a restore, a validation) failed for a reason the user can act
  on; reported as Azure's UserFacingError in jobs and instances, and as the CloudError of the
  operation that asked for the work (:meth:`UserError.to_arm`).

Errors of the layers below (drivers, subprocesses, storage) are translated into these at the seam
where they occur; nothing above a seam sees a psycopg or OS error as a reason.
"""

from __future__ import annotations

from typing import Any


class DpvaultError(Exception):
    """The base of dpvault's own errors."""


class PermanentError(DpvaultError):
    """A failure retrying cannot fix (a full disk, a name too long, a permission): the job that meets
    it ends at once instead of being retried."""


class ArmError(DpvaultError):
    """A failure with an HTTP status and an ARM CloudError body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        additional_info: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        # ARM's ErrorAdditionalInfo items ({"type": ..., "info": {...}}): where a UserFacingError goes,
        # since the Error schema allows no other properties (issue 13, oav validate-traffic).
        self.additional_info = additional_info
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        if self.additional_info:
            error["additionalInfo"] = self.additional_info
        return {"error": error}


class UserError(DpvaultError):
    """A failure the user is told about as Azure's UserFacingError: caused by their setup
    (credentials, network, permissions) or, with ``user_error`` false, by the service's."""

    def __init__(
        self,
        code: str,
        message: str,
        recommended_action: str,
        *,
        retryable: bool = False,
        user_error: bool = True,
    ) -> None:
        """``user_error`` false: the failure is the service's (its storage, an internal error), not the
        user's setup -- reported with ``isUserError: false``."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.recommended_action = recommended_action
        self.retryable = retryable
        self.user_error = user_error

    def user_facing(self) -> dict[str, Any]:
        """Azure's UserFacingError, as jobs and instances show it."""
        return {
            "code": self.code,
            "message": self.message,
            "recommendedAction": [self.recommended_action],
            "isRetryable": self.retryable,
            "isUserError": self.user_error,
        }

    def to_arm(self, status: int = 400) -> ArmError:
        """The CloudError of the operation that asked for the work: the UserFacingError in
        ``additionalInfo`` (type ``UserFacingError``); ARM's Error has no room for it elsewhere."""
        return ArmError(
            status,
            self.code,
            self.message,
            additional_info=[{"type": USER_FACING_ERROR, "info": self.user_facing()}],
        )


USER_FACING_ERROR = "UserFacingError"


def internal_error(message: str) -> ArmError:
    """An operation that ran out of attempts (the reason is in the server log, not here)."""
    return ArmError(500, "InternalError", message)


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


def busy(message: str) -> ArmError:
    """The service could not get to the data in time (a lock held elsewhere); retrying may work."""
    return ArmError(503, "ServerBusy", f"{message} Retry the request.", headers={"Retry-After": "1"})


class StateStoreFullError(ArmError):
    """The state database has no space left: the write was refused whole (nothing of it was
    written); reads keep working. The service's condition, not the caller's fault."""

    def __init__(self) -> None:
        super().__init__(
            507,
            "StateStoreFull",
            "The service is out of storage: its state database has no space left, so this request "
            "changed nothing. Reads keep working; retry once the operator has freed space.",
        )


def unauthenticated(code: str, message: str, description: str) -> ArmError:
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common", '
        f'error="invalid_token", error_description="{description}"'
    )
    return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})
