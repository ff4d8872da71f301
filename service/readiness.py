"""Readiness probes: can this process reach Postgres and Kafka right now? Each answers within a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from service.store.pool import DATABASE_ERRORS

_TIMEOUT = 2.0


async def postgres(pool: asyncpg.Pool) -> str | None:
    """None when Postgres answers, else why not."""
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), _TIMEOUT)
    except DATABASE_ERRORS as exc:  # TimeoutError is an OSError
        return type(exc).__name__
    return None


class KafkaProbe:
    """Keeps one admin client; a probe is a metadata request. Reconnects after a failure."""

    def __init__(self, bootstrap_servers: str, security: Mapping[str, Any] | None = None) -> None:
        self._bootstrap = bootstrap_servers
        self._security = dict(security or {})
        self._admin: AIOKafkaAdminClient | None = None

    async def check(self) -> str | None:
        try:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self._bootstrap, request_timeout_ms=int(_TIMEOUT * 1000), **self._security
                )
                await asyncio.wait_for(admin.start(), _TIMEOUT)
                self._admin = admin
            await asyncio.wait_for(self._admin.describe_cluster(), _TIMEOUT)
        except Exception as exc:  # any failure means "not ready"; the type is reported
            await self.close()
            return type(exc).__name__
        return None

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # closing a broken client may fail; nothing to do about it
                await admin.close()
