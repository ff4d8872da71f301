"""structlog, configured once per process (the consumers' and, through service/logs.py, every other process).

On a terminal: human-readable lines (structlog's console renderer). Otherwise — a pipe, a file, a container's
log collector — or with `SCIMSYNC_LOG_FORMAT=json`: JSON lines. Events are `noun.verb` with fields; never
personal data (no userName, emails, tokens, bodies).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, BinaryIO

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("auto", "json", "console")


def wants_console(fmt: str, stream: Any) -> bool:
    """`auto` means console on a TTY (a person watching), JSON everywhere else."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return fmt == "console"


def configure(level: str = "info", stream: BinaryIO | None = None, fmt: str = "auto") -> None:
    """`stream`: where the lines go (stdout; a command that prints its own result on stdout logs to stderr)."""
    numeric = _LEVELS.get(level, logging.INFO)
    binary = stream or sys.stdout.buffer
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory: Any
    if wants_console(fmt, binary):
        text = sys.stderr if binary is sys.stderr.buffer else sys.stdout
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=True)]
        factory = structlog.PrintLoggerFactory(text)
    else:
        json = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        processors = [*shared, structlog.processors.format_exc_info, json]
        factory = structlog.BytesLoggerFactory(binary)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # Libraries (uvicorn, aiokafka, asyncpg) log through the standard library: keep them quiet and on stderr.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
