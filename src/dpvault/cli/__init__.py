"""The ``dpvault`` command, one module per command group: ``serve`` runs the service, ``worker``
background work only, ``token`` prints a bearer token, ``verify`` checks recovery points, and
``secrets``, ``sources``, ``clients`` and ``subscriptions`` manage what the server knows.

Commands import what they need when they run, so ``dpvault --help`` starts fast.
"""

from __future__ import annotations

from dpvault.cli import accounts, keys, secrets, serve, sources, token, verify, worker  # noqa: F401 - they register commands
from dpvault.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
