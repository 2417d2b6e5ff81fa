"""Signing in to the dashboard, as Jupyter does: ``serve`` (or ``dpvault dashboard-url``) prints a
URL with a one-time code; opening it sets a session cookie for one tenant.

- A code is 32 random bytes (URL-safe). Only its SHA-256 is kept, as a file in
  ``<data-dir>/identity/dashboard-codes/`` (0600) with its tenant and expiry, so the CLI can make
  codes a running server accepts and every API process of the server (``--workers``) accepts them.
  Redeeming renames the file away first: of two requests with the same code, one wins.
- The session is a cookie holding a JWT signed with the server's own key, audience
  ``dpvault:dashboard`` (so it is never a bearer token, nor a bearer token a session): HttpOnly,
  SameSite=Strict, Secure (``__Host-`` prefix) when the server speaks TLS; 12 hours.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from dpvault.identity.files import write_private
from dpvault.identity.keys import SigningKey

CODES_DIR = "dashboard-codes"
CODE_LIFETIME = 24 * 3600
SESSION_LIFETIME = 12 * 3600
AUDIENCE = "dpvault:dashboard"
ISSUER = "dpvault-dashboard"
_CODE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")


def _codes(identity_dir: Path) -> Path:
    return identity_dir / CODES_DIR


def issue_code(identity_dir: Path, tenant: str, *, now: float | None = None) -> str:
    """A new one-time code for ``tenant`` (expired codes are removed on the way)."""
    now = time.time() if now is None else now
    code = secrets.token_urlsafe(32)
    folder = _codes(identity_dir)
    record = json.dumps({"tenant": tenant, "expires": now + CODE_LIFETIME}).encode()
    write_private(folder / hashlib.sha256(code.encode()).hexdigest(), record, exclusive=True)
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < now - CODE_LIFETIME - 60:
                old.unlink()
        except OSError:
            continue
    return code


def redeem_code(identity_dir: Path, code: str, *, now: float | None = None) -> str | None:
    """The tenant a valid, unused, unexpired code was made for (and the code is then gone); else None."""
    if not _CODE.match(code or ""):
        return None
    path = _codes(identity_dir) / hashlib.sha256(code.encode()).hexdigest()
    claimed = path.with_name(f"{path.name}.redeemed-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        os.rename(path, claimed)
    except OSError:
        return None
    try:
        record = json.loads(claimed.read_bytes())
    except (OSError, ValueError):
        return None
    finally:
        claimed.unlink(missing_ok=True)
    if float(record.get("expires", 0)) < (time.time() if now is None else now):
        return None
    return str(record["tenant"])


@dataclass(frozen=True)
class Session:
    tenant: str
    sid: str

    @property
    def csrf(self) -> str:
        """The token a form must carry (derived from the session id, which only the cookie holds)."""
        return hashlib.sha256(f"dpvault-csrf:{self.sid}".encode()).hexdigest()[:40]


def cookie_name(secure: bool) -> str:
    return "__Host-dpvault-session" if secure else "dpvault-session"


def new_session(key: SigningKey, tenant: str, *, now: float | None = None) -> tuple[Session, str]:
    issued = int(time.time() if now is None else now)
    session = Session(tenant, secrets.token_urlsafe(16))
    claims = {"iss": ISSUER, "aud": AUDIENCE, "tid": tenant, "sid": session.sid, "iat": issued,
              "exp": issued + SESSION_LIFETIME}  # fmt: skip
    return session, jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


def read_session(key: SigningKey, value: str | None) -> Session | None:
    if not value or len(value) > 4096:
        return None
    try:
        claims = jwt.decode(
            value, key.public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["exp", "iat", "tid", "sid"]},
        )  # fmt: skip
    except jwt.InvalidTokenError:
        return None
    return Session(str(claims["tid"]), str(claims["sid"]))


def set_cookie(name: str, value: str, *, secure: bool, max_age: int = SESSION_LIFETIME) -> str:
    flags = "; Secure" if secure else ""
    return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"
