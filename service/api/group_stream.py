"""`GET /Groups/{id}` of a big group, streamed: the body is written a chunk of members at a time.

Used when the whole group is asked for (no `attributes`/`excludedAttributes`). A group whose members fit in one
chunk is answered as usual; a bigger one gets the group's attributes first, then its members as they are read
(store/group_snapshot.py), so the API's memory stays bounded by a chunk whatever the group's size. The JSON is
the same as the unstreamed body's, with `members` last. The snapshot's connection goes back to the pool when the
body ends, fails or the client goes away.

A client that stops reading (or reads slower than a chunk per `SCIMSYNC_STREAM_WRITE_TIMEOUT_MS`) would keep the
snapshot's connection for as long as it likes, and a few such clients would empty the pool for every tenant: a
chunk the client doesn't accept within that time ends the response, the connection is reset (hangup.py) and the
snapshot's connection goes back to the pool. Counted in `scimsync_stream_stalls_total`, logged as
`groups.stream_stalled` (ids and sizes only).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from service import logs
from service.api import hangup
from service.api.responses import SCIM_MEDIA_TYPE, ScimResponse
from service.domain import groups as domain
from service.domain.groups import GroupRecord, Member
from service.domain.versions import etag
from service.store.group_snapshot import GroupSnapshot

CHUNK = 2000
log = logs.get(__name__)


async def get_whole_group(request: Request, tenant_id: str, base_url: str) -> Response:
    snapshot = await GroupSnapshot.open(request.app.state.deps.pool, tenant_id, request.path_params["id"])
    headers = {"ETag": etag(snapshot.record.version)}
    chunks = snapshot.chunks(CHUNK)
    try:
        first: list[Member] = await anext(chunks, [])
    except BaseException:
        await snapshot.close()
        raise
    if len(first) < CHUNK:  # the whole group is in hand: the usual answer
        await snapshot.close()
        record = dataclasses.replace(snapshot.record, members=tuple(first))
        return ScimResponse(domain.render(record, base_url), headers=headers)
    deps = request.app.state.deps
    body = _body(snapshot.record, base_url, first, chunks)
    return _StreamedGroup(snapshot, body, headers, deps.settings.stream_write_timeout_seconds, deps.metrics)


class _Stalled(Exception):
    """The client did not take a chunk within the write timeout. (Not a TimeoutError: that is an OSError, which
    Starlette reads as the client gone.)"""


class _StreamedGroup(StreamingResponse):
    """Gives the snapshot's connection back however the response ends: sent, failed, the client gone (a background
    task would be skipped on a disconnect) or stalled."""

    def __init__(
        self,
        snapshot: GroupSnapshot,
        body: AsyncIterator[bytes],
        headers: dict[str, str],
        write_timeout: float,
        metrics: Any,
    ) -> None:
        super().__init__(body, media_type=SCIM_MEDIA_TYPE, headers=headers)
        self.snapshot, self.write_timeout, self.metrics = snapshot, write_timeout, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0

        async def send_in_time(message: Message) -> None:
            nonlocal sent
            try:
                await asyncio.wait_for(send(message), self.write_timeout)
            except TimeoutError:
                raise _Stalled from None
            sent += len(message.get("body", b""))

        try:
            await super().__call__(scope, receive, send_in_time)
        except _Stalled:
            await self._cut_off(scope, sent)
        finally:
            await self.snapshot.close()

    async def _cut_off(self, scope: Scope, sent: int) -> None:
        self.metrics.stream_stalled()
        log.warning(
            "groups.stream_stalled",
            tenant_id=str(self.snapshot.tenant),
            group_id=self.snapshot.record.id,
            bytes_sent=sent,
            write_timeout_seconds=self.write_timeout,
        )
        hang_up = hangup.hang_up_of(scope)
        if hang_up is not None:
            hang_up()
            await asyncio.sleep(0)  # the server hears of the lost connection: the response needs no ending


async def _body(
    record: GroupRecord, base_url: str, first: list[Member], rest: AsyncIterator[list[Member]]
) -> AsyncIterator[bytes]:
    head = domain.render(record, base_url)  # no members loaded: every attribute but `members`
    yield orjson.dumps(head)[:-1] + b',"members":[' + _members(record, base_url, first)
    async for chunk in rest:
        yield b"," + _members(record, base_url, chunk)
    yield b"]}"


def _members(record: GroupRecord, base_url: str, chunk: list[Member]) -> bytes:
    """The chunk's member objects, comma-separated, rendered exactly as the unstreamed body renders them."""
    rendered = domain.render(dataclasses.replace(record, members=tuple(chunk)), base_url)["members"]
    return orjson.dumps(rendered)[1:-1]
