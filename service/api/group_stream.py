"""`GET /Groups/{id}` of a big group, streamed: the body is written a chunk of members at a time.

Used when the whole group is asked for (no `attributes`/`excludedAttributes`). A group whose members fit in one
chunk is answered as usual; a bigger one gets the group's attributes first, then its members as they are read
(store/group_snapshot.py), so the API's memory stays bounded by a chunk whatever the group's size. The JSON is
the same as the unstreamed body's, with `members` last. The snapshot's connection goes back to the pool when the
body ends, fails or the client goes away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from service.api.responses import SCIM_MEDIA_TYPE, ScimResponse
from service.domain import groups as domain
from service.domain.groups import GroupRecord, Member
from service.domain.versions import etag
from service.store.group_snapshot import GroupSnapshot

CHUNK = 2000


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
    return _StreamedGroup(snapshot, _body(snapshot.record, base_url, first, chunks), headers)


class _StreamedGroup(StreamingResponse):
    """Gives the snapshot's connection back however the response ends: sent, failed, or the client gone (a
    background task would be skipped on a disconnect)."""

    def __init__(self, snapshot: GroupSnapshot, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        super().__init__(body, media_type=SCIM_MEDIA_TYPE, headers=headers)
        self.snapshot = snapshot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.snapshot.close()


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
