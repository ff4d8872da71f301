"""What a domain gives the runtime: its name, its schema.sql, where it keeps user versions, its handlers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers.runtime.envelope import Event

# A handler applies one event inside the transaction the runtime opened (after the version gate let it through).
Handler = Callable[[Any, Event], Awaitable[None]]
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Domain:
    name: str  # also the consumer group (after the optional prefix)
    schema_sql: Path
    versions_table: str  # schema.table with (tenant_id uuid, user_id uuid, version bigint), PK (tenant_id, user_id)
    handlers: Mapping[str, Handler]

    def __post_init__(self) -> None:
        if not _TABLE.match(self.versions_table):
            raise ValueError(f"versions_table must be schema.table, got {self.versions_table!r}")

    @property
    def advance_sql(self) -> str:
        """Move the user's stored version to the event's, only forwards; a row comes back iff it moved.

        The upsert also takes the row lock, so everything else touching this user waits for our commit.
        """
        return (
            f"INSERT INTO {self.versions_table} AS v (tenant_id, user_id, version) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant_id, user_id) DO UPDATE SET version = EXCLUDED.version "
            "WHERE v.version < EXCLUDED.version RETURNING v.version"
        )


async def advance_version(conn: Any, domain: Domain, event: Event) -> bool:
    """True when the event is newer than what the domain holds (and the stored version is now the event's)."""
    row = await conn.fetchval(domain.advance_sql, event.tenant_id, event.user_id, event.version)
    return row is not None
