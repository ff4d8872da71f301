"""One trace from the identity provider's request to every consumer, across real processes.

The API, the relay, `scimsync replay` and both consumers run as the processes they are deployed as, exporting over
OTLP/HTTP to a small receiver in this test (it decodes `ExportTraceServiceRequest` with `opentelemetry.proto`), so
the export path is part of what is tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from service.store import tenants
from tests.integration.api_process import api_process
from tests.integration.conftest import ROOT, Stack, TenantInfo
from tests.integration.test_consumers_helpers import ConsumerEnv, eventually, read_topic, spawn

TRACE_ID = uuid.uuid4().hex
IDP_SPAN = "00f067aa0ba902b7"
IDP = f"00-{TRACE_ID}-{IDP_SPAN}-01"  # what Okta (or a proxy in front of us) would send
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PERSON = {
    "userName": "grace.trace@example.com",
    "name": {"givenName": "Grace", "familyName": "Tracewell"},
    "emails": [{"value": "grace.trace@example.com", "type": "work", "primary": True}],
    "active": True,
}
PERSONAL = ("grace.trace", "Grace", "Tracewell", "Hopper")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int  # 2 server, 3 client, 4 producer, 5 consumer (OTLP SpanKind)
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    field = any_value.WhichOneof("value")
    return getattr(any_value, field) if field else None


class Receiver:
    """An OTLP/HTTP traces endpoint on loopback that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest.FromString(body)
                receiver.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def add(self, request: Any) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Span(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(found)

    def where(self, **wanted: Any) -> list[Span]:
        """Spans whose fields (or, for other names, attributes) have these values."""
        with self._lock:
            spans = list(self.spans)
        fields = {"service", "name", "kind", "trace_id", "span_id", "parent_id"}
        return [
            s
            for s in spans
            if all(
                (getattr(s, k) if k in fields else s.attributes.get(k.replace("_", "."))) == v
                for k, v in wanted.items()
            )
        ]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _traced(receiver: Receiver, delay_ms: int = 100) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": str(delay_ms)}


@contextlib.contextmanager
def _pipeline(env: ConsumerEnv, tag: str, **extra: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The relay and both consumers as processes on this test's topics; SIGTERM at the end, exit 0 each."""
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    with open(ROOT / ".pytest_cache" / f"traces-relay-{env.topic}.log", "wb") as log:
        relay = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "relay"],
            cwd=ROOT,
            env=env.environ(SCIMSYNC_LOG_LEVEL="info", **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    procs = [relay, *(spawn(d, env, f"traces-{tag}-{d}-{env.topic}", **extra) for d in ("booking", "workspace"))]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
        assert codes == [0, 0, 0], f"relay, booking, workspace exited with {codes}"


@contextlib.asynccontextmanager
async def _tenant(db: Any, url: str) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    created, token = await tenants.create(db, f"traces-{uuid.uuid4().hex[:6]}")
    info = TenantInfo(created.id, token, f"{url}/scim/v2/{created.id}")
    async with httpx.AsyncClient(base_url=info.base_url, headers=info.headers, timeout=30) as client:
        yield created.id, client


async def _applied(db: Any, tenant_id: str, user_id: str, version: int) -> bool:
    booking = await db.fetchval(
        "SELECT version FROM booking.users WHERE tenant_id = $1 AND user_id = $2", uuid.UUID(tenant_id), user_id
    )
    workspace = await db.fetchval(
        "SELECT version FROM workspace.versions WHERE tenant_id = $1 AND user_id = $2", uuid.UUID(tenant_id), user_id
    )
    return booking == version and workspace == version


async def _replay(env: ConsumerEnv, user_id: str, **extra: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "replay", "--user", user_id,
        env=env.environ(SCIMSYNC_LOG_LEVEL="warning", **extra), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_one_patch_is_one_trace_from_the_request_to_both_consumers_and_a_replay_joins_it(
    receiver: Receiver, env: ConsumerEnv, db: Any, database_url: str, stack: Stack
) -> None:
    traced = _traced(receiver)
    async with api_process(database_url, stack.kafka, **traced) as (url, _log), _tenant(db, url) as (tenant_id, scim):
        with _pipeline(env, "on", **traced):
            created = await scim.post("/Users", json=PERSON)
            assert created.status_code == 201, created.text
            uid = created.json()["id"]
            body = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "name.familyName", "value": "Hopper"}]}
            patched = await scim.patch(f"/Users/{uid}", json=body, headers={"traceparent": IDP})
            assert patched.status_code == 200, patched.text
            await eventually(lambda: _applied(db, tenant_id, uid, 2), 60, "the PATCH applied in both domains")

            async def whole_trace() -> bool:
                return len(receiver.where(trace_id=TRACE_ID, kind=5)) >= 2

            await eventually(whole_trace, 30, "both consumers' spans of the PATCH's trace")

            # A replay of the user's events, from a process that exports its spans only as it exits (the
            # batch delay is longer than it lives): the consumers skip them as duplicates, in the same trace.
            await _replay(env, uid, **_traced(receiver, delay_ms=60_000))

            async def replayed() -> bool:
                return len(receiver.where(trace_id=TRACE_ID, kind=5, scimsync_replay=True)) >= 2

            await eventually(replayed, 30, "both consumers' spans of the replayed PATCH event")

    event = await db.fetchrow("SELECT id, traceparent FROM events WHERE subject = $1 AND version = 2", uuid.UUID(uid))
    spans = receiver.where(trace_id=TRACE_ID)

    # The request continues the identity provider's trace; each hop is the child of the one before.
    (request,) = [s for s in spans if s.kind == 2]
    assert (request.service, request.name, request.parent_id) == (
        "scimsync-api",
        "PATCH /scim/v2/{tenant_id}/Users/{id}",
        IDP_SPAN,
    )
    assert request.attributes["http.route"] == "/scim/v2/{tenant_id}/Users/{id}"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["scimsync.tenant_id"] == tenant_id
    assert request.attributes["scimsync.request_id"] == patched.headers["x-request-id"]
    (write,) = [s for s in spans if s.name == "scimsync.outbox.write"]
    assert (write.service, write.parent_id) == ("scimsync-api", request.span_id)
    assert write.attributes["scimsync.event.type"] == "user.updated"
    assert event["traceparent"] == f"00-{TRACE_ID}-{write.span_id}-01"  # stored with the event
    (publish,) = receiver.where(trace_id=TRACE_ID, service="scimsync-relay")
    assert (publish.name, publish.kind, publish.parent_id) == ("scimsync.relay.publish", 4, write.span_id)
    assert publish.attributes["messaging.message.id"] == str(event["id"])
    assert publish.attributes["scimsync.replay"] is False
    first = {s.service: s for s in spans if s.kind == 5 and not s.attributes["scimsync.replay"]}
    assert sorted(first) == ["scimsync-consumer-booking", "scimsync-consumer-workspace"]
    for apply in first.values():
        assert apply.parent_id == publish.span_id
        assert apply.attributes["scimsync.outcome"] == "applied"
        assert apply.attributes["messaging.message.id"] == str(event["id"])
        assert apply.attributes["scimsync.aggregate.id"] == uid

    # The replay: its own publish span (exported at exit), in the original trace, marked; so are the applies.
    (republish,) = receiver.where(trace_id=TRACE_ID, service="scimsync-replay")
    assert (republish.parent_id, republish.attributes["scimsync.replay"]) == (write.span_id, True)
    again = {s.service: s for s in spans if s.kind == 5 and s.attributes["scimsync.replay"]}
    assert sorted(again) == ["scimsync-consumer-booking", "scimsync-consumer-workspace"]
    assert {s.parent_id for s in again.values()} == {republish.span_id}
    assert {s.attributes["scimsync.outcome"] for s in again.values()} == {"skipped_duplicate"}

    # The POST came without a traceparent: a trace of its own, as long.
    (post,) = receiver.where(name="POST /scim/v2/{tenant_id}/Users")
    assert post.parent_id == "" and post.trace_id != TRACE_ID
    assert len(receiver.where(trace_id=post.trace_id, kind=5, scimsync_replay=False)) == 2

    # Ids and types only: nothing of the person in any span, of any process.
    values = repr([(s.name, s.attributes) for s in receiver.where()])
    assert not [word for word in PERSONAL if word in values]


async def test_without_an_endpoint_nothing_traces_and_the_idps_traceparent_still_reaches_kafka(
    env: ConsumerEnv, scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    """The session's API and this pipeline run without OTEL_EXPORTER_OTLP_ENDPOINT: no span is made anywhere (a
    span would have replaced the parent id), yet the request's traceparent is stored and published unchanged."""
    created = await scim.post("/Users", json=PERSON, headers={"traceparent": IDP})
    untraced = await scim.post("/Users", json={**PERSON, "userName": "no.trace@example.com"})
    assert created.status_code == untraced.status_code == 201
    uid, other = created.json()["id"], untraced.json()["id"]
    stored = await db.fetchval("SELECT traceparent FROM events WHERE subject = $1", uuid.UUID(uid))
    assert stored == IDP
    assert await db.fetchval("SELECT traceparent FROM events WHERE subject = $1", uuid.UUID(other)) is None
    with _pipeline(env, "off"):
        await eventually(lambda: _applied(db, tenant.id, uid, 1), 60, "the user applied in both domains")
        published: dict[str, Any] = {}

        async def both_published() -> bool:
            records = await read_topic(env.kafka, env.topic, expected=10_000, within=1)
            published.update((orjson.loads(r.value)["subject"], r) for r in records)
            return uid in published and other in published

        await eventually(both_published, 30, "both users' events on the topic")
    headers = dict(published[uid].headers)
    assert headers["traceparent"] == IDP.encode()
    assert orjson.loads(published[uid].value)["traceparent"] == IDP
    assert "traceparent" not in dict(published[other].headers)
    assert "traceparent" not in orjson.loads(published[other].value)
