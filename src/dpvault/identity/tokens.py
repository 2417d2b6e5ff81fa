"""Bearer tokens: issue (``dpvault token``) and validate (every ARM request).

Tokens look like Entra ID access tokens for ARM: RS256, ``aud`` https://management.azure.com/,
``scp`` user_impersonation, ``tid``/``oid``. Validation is PyJWT's: signature, algorithm pinned to
RS256, ``exp``/``nbf``/``iat`` with a small leeway, issuer and audience.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from dpvault import errors
from dpvault.arm.http import Principal
from dpvault.identity.keys import SigningKey

LOCAL_ISSUER = "https://sts.dpvault.local/{tenant}/"
AUDIENCES = (
    "https://management.azure.com/",
    "https://management.core.windows.net/",
    "https://management.azure.com",
)
LEEWAY = 60


def issue(
    key: SigningKey,
    *,
    tenant: str,
    name: str = "dpvault-user",
    application: bool = False,
    lifetime: int = 24 * 3600,
    audience: str = AUDIENCES[0],
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dpvault:{tenant}:{name}"))
    claims: dict[str, Any] = {
        "iss": LOCAL_ISSUER.format(tenant=tenant),
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "tid": tenant,
        "oid": oid,
        "sub": oid,
        "ver": "1.0",
    }
    if application:
        claims.update({"appid": oid, "idtyp": "app", "roles": ["user_impersonation"]})
    else:
        claims.update(
            {"name": name, "upn": f"{name}@dpvault.local", "scp": "user_impersonation", "idtyp": "user"}
        )
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


class Verifier:
    def __init__(self, key: SigningKey, *, extra_audiences: tuple[str, ...] = ()) -> None:
        self._key = key.public_key
        self._audiences = list(AUDIENCES) + list(extra_audiences)

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise errors.unauthenticated(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.unauthenticated(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is not a bearer token.",
                "The authentication failed because of an invalid 'Authorization' header format.",
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["RS256"],
                audience=self._audiences,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise errors.unauthenticated(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
                "The access token has expired.",
            ) from None
        except jwt.InvalidTokenError as exc:
            raise errors.unauthenticated(
                "InvalidAuthenticationToken",
                f"The access token is invalid: {_reason(exc)}.",
                "The access token is invalid.",
            ) from None
        tenant = str(claims["tid"])
        if claims.get("iss") != LOCAL_ISSUER.format(tenant=tenant):
            raise errors.unauthenticated(
                "InvalidAuthenticationTokenTenant",
                "The access token is from the wrong issuer. It must match the tenant associated with this server.",
                "The access token is from the wrong issuer.",
            )
        is_app = claims.get("idtyp") == "app" or "scp" not in claims
        scopes = str(claims.get("scp", "")).split()
        roles = claims.get("roles") or []
        if "user_impersonation" not in scopes and not roles:
            raise errors.unauthenticated(
                "InvalidAuthenticationToken",
                "The access token carries neither the 'user_impersonation' scope nor an application role.",
                "The access token has insufficient scope.",
            )
        display = str(
            claims.get("upn") or claims.get("unique_name") or claims.get("appid") or claims.get("oid")
        )
        return Principal(
            subject=str(claims.get("oid", "")),
            display=display,
            kind="Application" if is_app else "User",
            tenant=tenant,
            claims=claims,
        )


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the signature does not verify"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the audience is not accepted"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not yet valid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the signing algorithm is not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the claim '{exc.claim}' is missing"
    if isinstance(exc, jwt.DecodeError):
        return "it is not a well-formed JWT"
    return "it could not be validated"
