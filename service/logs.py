"""structlog, configured once per process: human-readable on a terminal, JSON lines otherwise
(`SCIMSYNC_LOG_FORMAT=auto|json|console`); on stdout for the API and the relay, on stderr for commands that print a
result; contextvars (request id, tenant) merged in.

One implementation for every process, in consumers/runtime/logs.py (the consumers may not import `service`).
Log events are `noun.verb` with fields; never personal data (no userName, emails, tokens, bodies).
"""

from __future__ import annotations

import sys
from typing import TextIO

import structlog

from consumers.runtime import logs as _logs


def configure(level: str = "info", stream: TextIO | None = None, fmt: str = "auto") -> None:
    _logs.configure(level, stream=(stream or sys.stdout).buffer, fmt=fmt)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
