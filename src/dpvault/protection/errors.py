"""Failures users can act on, reported as Azure's UserFacingError (code, message, recommendedAction)."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A failure caused by the user's setup (credentials, network, permissions), not by dpvault."""

    def __init__(self, code: str, message: str, recommended_action: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recommended_action = recommended_action
        self.retryable = retryable

    def user_facing(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "recommendedAction": [self.recommended_action],
            "isRetryable": self.retryable,
            "isUserError": True,
        }


def secret_not_found(uri: str) -> UserError:
    return UserError(
        "UserErrorSecretNotFound",
        f"The secret '{uri}' was not found in any configured secret store.",
        "Store the database connection string under this URI (dpvault secrets set <uri>) or fix the URI "
        "in datasourceAuthCredentials.secretStoreResource.uri.",
    )


def no_credentials() -> UserError:
    return UserError(
        "UserErrorMissingCredentials",
        "The backup instance has no datasourceAuthCredentials, so dpvault cannot connect to the database.",
        "Add datasourceAuthCredentials with a SecretStoreBasedAuthCredentials secretStoreResource.uri.",
    )
