"""Bearer-token validation for every ARM route.

Accepted: tokens signed with the server's own key (``dpvault token`` and the built-in issuer), and
tokens from trusted issuers (``issuers.py``). Always checked: the algorithm (RS256/ES256 only: never
``none`` or HMAC), the signature, ``exp``/``nbf``/``iat`` with 60 s leeway, ``iss``, ``aud``, and
authorisation to call ARM: a delegated token needs the ``user_impersonation`` scope, an app-only token
an application role or ``idtyp: app``. Verified tokens are cached until they expire.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import jwt

from dpvault import errors
from dpvault.arm.http import Principal
from dpvault.identity.issuers import TrustedIssuer
from dpvault.identity.keys import SigningKey
from dpvault.identity.tokens import AUDIENCES, is_local_issuer

ALGORITHMS = ["RS256", "ES256"]
LEEWAY = 60
CACHE_SIZE = 10_000


def _denied(code: str, message: str, description: str) -> errors.ArmError:
    return errors.unauthenticated(code, message, description)


def _invalid(reason: str) -> errors.ArmError:
    return _denied(
        "InvalidAuthenticationToken",
        f"The access token is invalid: {reason}.",
        "The access token is invalid.",
    )


class Verifier:
    def __init__(
        self,
        local: SigningKey | None,
        *,
        issuers: list[TrustedIssuer] | None = None,
        extra_audiences: tuple[str, ...] = (),
    ) -> None:
        self._local = local
        self._issuers = issuers or []
        self._audiences = list(AUDIENCES) + list(extra_audiences)
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise _denied(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _denied(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is not a bearer token.",
                "The authentication failed because of an invalid 'Authorization' header format.",
            )
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(token)
            return cached[1]
        claims = await self._decode(token)
        principal = _principal(claims)
        try:
            until = min(float(claims["exp"]) + LEEWAY, now + 3600)
        except (OverflowError, TypeError, ValueError):
            until = now + 60
        self._cache[token] = (until, principal)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    async def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise _invalid("it is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _invalid(f"the signing algorithm '{alg}' is not accepted (RS256 or ES256)")
        iss = str(unverified.get("iss", ""))
        kid = header.get("kid")
        local_iss = is_local_issuer(iss)
        if self._local is not None and (
            (kid is not None and kid == self._local.kid) or (kid is None and local_iss)
        ):
            if not local_iss:
                raise _invalid("the issuer does not match the server's own key")
            return self._check(token, self._local.public_key, self._audiences, iss)
        for issuer in self._issuers:
            match = issuer.matches(iss)
            if match is None:
                continue
            tid = unverified.get("tid")
            if not issuer.tenant_allowed(str(tid) if tid is not None else None, match):
                raise _invalid("the issuer does not speak for the token's tenant (tid)")
            try:
                key = await asyncio.to_thread(issuer.signing_key, token)
            except (jwt.PyJWKClientConnectionError, OSError):  # before its base class, PyJWKClientError
                raise _denied(
                    "AuthenticationFailed",
                    "The token issuer's keys could not be fetched; try again later.",
                    "The issuer's signing keys are unavailable.",
                ) from None
            except jwt.PyJWKClientError:
                raise _invalid("its signing key is not one the issuer publishes") from None
            claims = self._check(token, key, list(issuer.audiences) or self._audiences, iss)
            if "tid" not in claims and issuer.tenant:
                claims["tid"] = issuer.tenant
            return claims
        if local_iss and self._local is not None:
            # dpvault's own issuer, but not this server's key: most likely `dpvault token` run with
            # another --data-dir (a typo makes a new key), not an untrusted issuer.
            raise _invalid(
                f"it is signed by a key this server does not have (kid '{str(kid)[:64]}'); this server signs with "
                f"kid '{self._local.kid}': make tokens with `dpvault token --data-dir` of the server's data directory"
            )
        raise _denied(
            "InvalidAuthenticationTokenIssuer",
            "The access token is from an issuer this server does not trust.",
            "The access token's issuer is not trusted.",
        )

    def _check(self, token: str, key: Any, audiences: list[str], iss: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=audiences, issuer=iss, leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise _denied(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
                "The access token has expired.",
            ) from None
        except jwt.InvalidTokenError as exc:
            raise _invalid(_reason(exc)) from None
        except (TypeError, ValueError, jwt.PyJWKError):  # e.g. an RS256 token naming an EC key
            raise _invalid("its algorithm does not fit the key it names") from None
        scopes = str(claims.get("scp", "")).split()
        roles = claims.get("roles") if isinstance(claims.get("roles"), list) else []
        app_only = "scp" not in claims
        if app_only and not (roles or claims.get("idtyp") == "app"):
            raise _invalid("an app-only token needs an application role (roles) or idtyp 'app'")
        if not app_only and "user_impersonation" not in scopes:
            raise _invalid("the token lacks the 'user_impersonation' scope")
        return claims


def _principal(claims: dict[str, Any]) -> Principal:
    tenant = str(claims.get("tid") or "")
    if not tenant:
        raise _invalid("the token names no tenant (tid)")
    app = "scp" not in claims
    display = str(
        claims.get("upn")
        or claims.get("unique_name")
        or claims.get("appid")
        or claims.get("azp")
        or claims.get("oid")
        or claims.get("sub")
    )
    return Principal(
        subject=str(claims.get("oid") or claims.get("sub") or ""),
        display=display,
        kind="Application" if app else "User",
        tenant=tenant,
        claims=claims,
    )


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the signature does not verify"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the audience is not accepted"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the issuer is not accepted"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not yet valid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the signing algorithm is not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the claim '{exc.claim}' is missing"
    if isinstance(exc, jwt.DecodeError):
        return "it is not a well-formed JWT"
    return "it could not be validated"
