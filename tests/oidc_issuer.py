"""A tiny standalone OpenID issuer for tests: ``python -m tests.oidc_issuer --port P --key-file K``.

It serves, over plain HTTP on 127.0.0.1, for any tenant:

- ``GET /<tenant>/v2.0/.well-known/openid-configuration``: ``issuer`` is ``http://127.0.0.1:P/<tenant>/v2.0``
  and ``jwks_uri`` is ``http://127.0.0.1:P/<tenant>/discovery/v2.0/keys``;
- ``GET /<tenant>/discovery/v2.0/keys``: the JWKS: the RSA key of ``--key-file``, the EC P-256 key of
  ``--ec-key-file`` (optional) and, once the file ``--next-key-marker`` exists, the RSA key of
  ``--next-key-file`` (key rotation);
- ``GET /_stats``: how many times each document was fetched (``{"discovery": n, "jwks": n}``).

It never issues tokens: a test holds the private keys and mints its own (``mint``), with the ``kid``
that ``kid_of`` derives from the public key, as the JWKS names it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ARM = "https://management.azure.com/"

_DISCOVERY = re.compile(r"^/(?P<tenant>[A-Za-z0-9.-]+)/v2\.0/\.well-known/openid-configuration$")
_JWKS = re.compile(r"^/(?P<tenant>[A-Za-z0-9.-]+)/discovery/v2\.0/keys$")


def kid_of(key: Any) -> str:
    """The key id of a (private or public) key: SHA-256 of its public SubjectPublicKeyInfo, 16 bytes."""
    public = key.public_key() if hasattr(key, "public_key") else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:16]).decode().rstrip("=")


def load_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def write_key(path: Path, key: Any) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    return path


def new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any) -> dict[str, Any]:
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, rsa.RSAPublicKey):
        doc = RSAAlgorithm.to_jwk(public, as_dict=True)
        alg = "RS256"
    else:
        doc = ECAlgorithm.to_jwk(public, as_dict=True)
        alg = "ES256"
    assert isinstance(doc, dict)
    return {**doc, "use": "sig", "alg": alg, "kid": kid_of(public)}


def issuer_url(port: int, tenant: str) -> str:
    return f"http://127.0.0.1:{port}/{tenant}/v2.0"


def claims(issuer: str, tenant: str, **changes: Any) -> dict[str, Any]:
    """Entra-shaped delegated-token claims for ARM; ``changes`` override (``None`` removes a claim)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": ARM,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": tenant,
        "oid": "4f1e0c2a-0000-4000-8000-00000000e71d",
        "sub": "4f1e0c2a-0000-4000-8000-00000000e71d",
        "upn": "alice@external.test",
        "scp": "user_impersonation",
        "ver": "2.0",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: Any, issuer: str, tenant: str, *, kid: str | None = "auto", **changes: Any) -> str:
    """A token signed with ``key`` (RS256 for RSA, ES256 for EC) naming ``kid`` (default: the key's)."""
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    headers = {} if kid is None else {"kid": kid_of(key) if kid == "auto" else kid}
    return jwt.encode(claims(issuer, tenant, **changes), key, algorithm=alg, headers=headers)


class _State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.keys = [load_key(args.key_file)]
        if args.ec_key_file:
            self.keys.append(load_key(args.ec_key_file))
        self.next_key = load_key(args.next_key_file) if args.next_key_file else None
        self.marker: Path | None = args.next_key_marker
        self.stats = {"discovery": 0, "jwks": 0}
        self.lock = threading.Lock()

    def jwks(self) -> dict[str, Any]:
        keys = list(self.keys)
        if self.next_key is not None and self.marker is not None and self.marker.exists():
            keys.append(self.next_key)
        return {"keys": [jwk(k) for k in keys]}


def _handler(state: _State, port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if match := _DISCOVERY.match(path):
                tenant = match["tenant"]
                with state.lock:
                    state.stats["discovery"] += 1
                base = f"http://127.0.0.1:{port}/{tenant}"
                self._json(
                    200,
                    {
                        "issuer": issuer_url(port, tenant),
                        "jwks_uri": f"{base}/discovery/v2.0/keys",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "response_types_supported": ["code", "token"],
                        "subject_types_supported": ["pairwise"],
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    },
                )
            elif _JWKS.match(path):
                with state.lock:
                    state.stats["jwks"] += 1
                self._json(200, state.jwks())
            elif path == "/_stats":
                with state.lock:
                    self._json(200, dict(state.stats))
            else:
                self._json(404, {"error": "not_found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-file", type=Path, required=True, help="RSA private key (PEM)")
    parser.add_argument("--ec-key-file", type=Path, help="EC P-256 private key (PEM), also published")
    parser.add_argument("--next-key-file", type=Path, help="RSA key published once the marker exists")
    parser.add_argument("--next-key-marker", type=Path, help="file whose existence publishes --next-key-file")
    args = parser.parse_args(argv)
    state = _State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(state, args.port))
    print(f"oidc issuer listening on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
