"""structlog configuration: key=value lines (or JSON) on stderr. Tokens and secrets are never passed in."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(*, level: str = "info", json: bool = False) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    # Tracebacks never show local variables: they would print request headers (bearer tokens).
    if json:
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        renderer: structlog.typing.Processor = structlog.processors.JSONRenderer()
        processors = [tracebacks, renderer]
    else:
        processors = [
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
        ]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *processors,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The Azure SDKs log every HTTP request and its headers at INFO (the blob engine's datasource calls)
    logging.getLogger("azure").setLevel(logging.WARNING)
