"""A group and its members read from one snapshot, the members a chunk at a time, for a response that streams them.

A 200,000-member group loaded whole is ~200k Python objects and a ~37 MB body in memory at once; read in chunks by
user id (the primary key's order, as `groups.with_members` returns them) from a REPEATABLE READ, READ ONLY
transaction, the group row and every chunk come from the same snapshot while memory stays bounded by a chunk.
The snapshot holds a pooled connection until `close()`, which callers must reach however the response ends.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from service.domain.errors import NotFound
from service.domain.groups import GroupRecord, Member
from service.store.groups import record
from service.store.ids import resource_id

_GROUP = "SELECT id, resource, version, created_at, updated_at FROM groups WHERE tenant_id = $1 AND id = $2"
_CHUNK = """
SELECT user_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id > $3
ORDER BY user_id LIMIT $4
"""
_FIRST = uuid.UUID(int=0)


class GroupSnapshot:
    def __init__(self, pool: asyncpg.Pool, conn: Any, transaction: Any, tenant: uuid.UUID, record: GroupRecord):
        self._pool, self._conn, self._transaction = pool, conn, transaction
        self.tenant, self.record = tenant, record

    @classmethod
    async def open(cls, pool: asyncpg.Pool, tenant_id: str, group_id: str) -> GroupSnapshot:
        tenant, key = uuid.UUID(tenant_id), resource_id(group_id, "Group")
        conn = await pool.acquire()
        transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        try:
            await transaction.start()
            row = await conn.fetchrow(_GROUP, tenant, key)
        except BaseException:
            await _end(pool, conn, transaction)
            raise
        if row is None:
            await _end(pool, conn, transaction)
            raise NotFound(f"Group {group_id} not found")
        return cls(pool, conn, transaction, tenant, record(row))

    async def chunks(self, size: int) -> AsyncIterator[list[Member]]:
        """The members, `size` at a time, in user id order; an empty group yields nothing."""
        last, group = _FIRST, uuid.UUID(self.record.id)
        while self._conn is not None:
            rows = await self._conn.fetch(_CHUNK, self.tenant, group, last, size)
            if rows:
                yield [Member(str(r["user_id"]), None) for r in rows]
                last = rows[-1]["user_id"]
            if len(rows) < size:
                return

    async def close(self) -> None:
        """End the snapshot and give the connection back; safe to call more than once."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await _end(self._pool, conn, self._transaction)


async def _end(pool: asyncpg.Pool, conn: Any, transaction: Any) -> None:
    try:
        if not conn.is_closed() and conn.is_in_transaction():
            await transaction.rollback()  # read only: nothing to keep
    except (asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()  # e.g. cancelled mid-query: never hand a connection in an unknown state back
    finally:
        await pool.release(conn)
