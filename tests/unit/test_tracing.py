"""Tracing: the W3C traceparent, the no-op path when no OTLP endpoint is set, and the spans each hop makes."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.types import Receive, Scope, Send

from consumers.runtime import tracing as consumer_tracing
from consumers.runtime.envelope import decode
from consumers.runtime.schemas import SchemaRegistry
from service import tracing
from service.api.middleware import RequestContext
from service.domain import events, users
from service.domain.events import StoredEvent
from service.relay.publisher import Publisher
from tests.unit.test_events import VALIDATORS

IDP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TENANT, USER = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    assert tracing.setup("scimsync-test", exporter=exporter)
    yield exporter
    tracing.shutdown()


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*consumer_tracing.ENDPOINT_VARIABLES, "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)


def stored(traceparent: str | None = IDP, kind: str = users.UPDATED) -> StoredEvent:
    return StoredEvent(
        sequence=7,
        id=str(uuid.uuid4()),
        tenant_id=TENANT,
        subject=USER,
        type=kind,
        version=2,
        occurred_at=datetime(2026, 3, 2, 9, 15, 2, tzinfo=UTC),
        data=users.event_data(USER, {"userName": "ada@example.com", "active": True}),
        traceparent=traceparent,
    )


# --- traceparent ------------------------------------------------------------------------------------------------


def test_a_traceparent_parses_and_formats_back_unchanged() -> None:
    context = tracing.parse(IDP)
    assert context is not None and context.is_remote
    assert (context.trace_id, context.span_id) == (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    assert context.trace_flags.sampled
    assert tracing.format_traceparent(context) == IDP
    assert tracing.parse(IDP.encode()) == context
    assert tracing.normalise(IDP[:-2] + "00") == IDP[:-2] + "00"  # not sampled: kept as such


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        IDP.upper(),  # lowercase hex only
        IDP[:-1],
        IDP + "-extra",  # version 00 has exactly four fields
        "ff" + IDP[2:],  # version ff is invalid
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero parent id
        b"\xff\xfe",
    ],
)
def test_an_invalid_traceparent_is_none(value: Any) -> None:
    assert tracing.parse(value) is None
    assert tracing.normalise(value) is None
    assert tracing.parent(value) is None


def test_a_later_version_with_more_fields_is_read_as_version_00() -> None:
    assert tracing.normalise("01" + IDP[2:] + "-whatever") == IDP


def test_only_an_otlp_endpoint_switches_tracing_on() -> None:
    assert not consumer_tracing.configured({})
    assert consumer_tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert consumer_tracing.configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not consumer_tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert not consumer_tracing.configured(disabled)


# --- off: no span objects, the incoming traceparent passed on ---------------------------------------------------


def test_without_an_endpoint_setup_installs_nothing() -> None:
    assert tracing.setup("scimsync-api") is False
    assert not tracing.enabled()
    with tracing.OutboxWrite("user", USER) as write:
        write.event(users.UPDATED)
    assert write.traceparent is None  # no request traceparent, no trace: nothing to store


def test_off_the_outbox_write_stores_the_requests_own_traceparent() -> None:
    token = tracing.incoming.set(IDP)
    try:
        with tracing.OutboxWrite("user", USER) as write:
            pass
    finally:
        tracing.incoming.reset(token)
    assert write.traceparent == IDP


class _Deps:
    """What RequestContext uses of the app's dependencies."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(observe_request=lambda *a: None, refused=lambda *a: None)
        self.audit = SimpleNamespace(record=lambda *a, **k: None)


async def _call(headers: list[tuple[bytes, bytes]], path: str = "/scim/v2/t/Users/u") -> dict[str, Any]:
    """One request through RequestContext; what the endpoint saw of tracing."""
    seen: dict[str, Any] = {}

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        scope["scimsync"]["tenant_id"] = TENANT
        seen["incoming"] = tracing.incoming.get()
        seen["span"] = trace.get_current_span()
        with tracing.OutboxWrite("user", USER) as write:
            write.event(users.UPDATED, 2)
        seen["stored"] = write.traceparent
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "PATCH", "path": path, "headers": headers, "query_string": b""}
    await RequestContext(endpoint, _Deps())(scope, receive, send)
    return seen


async def test_off_a_request_keeps_its_traceparent_for_its_events_and_makes_no_span() -> None:
    seen = await _call([(b"traceparent", IDP.encode())])
    assert seen["incoming"] == IDP and seen["stored"] == IDP
    assert seen["span"] is trace.INVALID_SPAN
    assert tracing.incoming.get() is None  # not left behind for the next request
    assert (await _call([]))["stored"] is None


# --- on: the request, the outbox write, the publish, the apply --------------------------------------------------


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def test_on_a_request_span_continues_the_idps_trace_and_parents_the_outbox_write(
    spans: InMemorySpanExporter,
) -> None:
    seen = await _call([(b"traceparent", IDP.encode())])
    found = _by_name(spans)
    request, write = found["PATCH unmatched"], found["scimsync.outbox.write"]
    idp = tracing.parse(IDP)
    assert idp is not None and request.parent is not None and write.parent is not None
    assert request.kind == SpanKind.SERVER
    assert request.context.trace_id == write.context.trace_id == idp.trace_id
    assert request.parent.span_id == idp.span_id and write.parent.span_id == request.context.span_id
    assert seen["stored"] == tracing.format_traceparent(write.context)  # the events' parent: the write
    assert dict(request.attributes or {}) == {
        "http.request.method": "PATCH",
        "http.route": "unmatched",
        "http.response.status_code": 200,
        "scimsync.tenant_id": TENANT,
        "scimsync.request_id": dict(request.attributes or {})["scimsync.request_id"],
    }
    assert dict(write.attributes or {}) == {
        "scimsync.aggregate": "user",
        "scimsync.aggregate.id": USER,
        "scimsync.event.type": users.UPDATED,
        "scimsync.event.version": 2,
    }


async def test_on_a_request_without_traceparent_starts_a_trace_and_probes_make_none(
    spans: InMemorySpanExporter,
) -> None:
    await _call([])
    await _call([], path="/healthz")
    request = _by_name(spans)["PATCH unmatched"]
    assert request.parent is None
    assert len(spans.get_finished_spans()) == 3  # request + write; /healthz: its write only, no request span


class _Producer:
    """An AIOKafkaProducer stand-in: keeps what is sent; each send's answer is a future the test resolves."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append({"topic": topic, "value": orjson.loads(value), "headers": dict(headers)})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


async def _publish(event: StoredEvent, replay: bool = False) -> dict[str, Any]:
    publisher = Publisher("127.0.0.1:1", {"user": "users", "group": "groups"}, 1, replay=replay)
    producer = _Producer()
    future = await publisher._send(producer, event, [])  # type: ignore[arg-type]
    future.set_result(None)
    await asyncio.sleep(0)  # the done callback
    return producer.sent[0]


async def test_off_the_relay_publishes_the_stored_traceparent_as_header_and_attribute() -> None:
    sent = await _publish(stored())
    assert sent["headers"]["traceparent"] == IDP.encode() and sent["value"]["traceparent"] == IDP
    assert "scimsync_replay" not in sent["headers"]
    untraced = await _publish(stored(traceparent=None))
    assert "traceparent" not in untraced["headers"] and "traceparent" not in untraced["value"]


async def test_on_each_publish_is_a_producer_span_whose_context_the_header_carries(
    spans: InMemorySpanExporter,
) -> None:
    sent = await _publish(stored())
    (span,) = spans.get_finished_spans()
    idp = tracing.parse(IDP)
    assert idp is not None and span.parent is not None
    assert span.kind == SpanKind.PRODUCER and span.name == "scimsync.relay.publish"
    assert span.context.trace_id == idp.trace_id and span.parent.span_id == idp.span_id
    assert sent["headers"]["traceparent"] == tracing.format_traceparent(span.context).encode()
    assert sent["value"]["traceparent"] == IDP  # the attribute stays where the change began
    assert (span.attributes or {})["scimsync.replay"] is False


async def test_a_replay_is_marked_and_keeps_the_original_trace(spans: InMemorySpanExporter) -> None:
    sent = await _publish(stored(), replay=True)
    (span,) = spans.get_finished_spans()
    assert sent["headers"]["scimsync_replay"] == b"1"
    assert (span.attributes or {})["scimsync.replay"] is True
    assert span.context.trace_id == tracing.parse(IDP).trace_id  # type: ignore[union-attr]


def test_the_envelope_carries_the_traceparent_only_when_stored_and_the_schemas_accept_it() -> None:
    assert events.envelope(stored())["traceparent"] == IDP
    assert "traceparent" not in events.envelope(stored(traceparent=None))
    validator = VALIDATORS[users.UPDATED]
    assert validator.is_valid(events.envelope(stored()))
    assert not validator.is_valid({**events.envelope(stored()), "traceparent": "00-nope"})


def _record(event: StoredEvent, headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    value = orjson.dumps(events.envelope(event))
    return SimpleNamespace(topic="users", partition=2, offset=41, headers=headers, value=value)


def test_a_consumer_span_continues_from_the_header_else_from_the_attribute(spans: InMemorySpanExporter) -> None:
    relay_hop = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
    for headers in ([("traceparent", relay_hop.encode()), ("scimsync_replay", b"1")], []):
        record = _record(stored(), headers)
        event = decode(record.value, SchemaRegistry({}))
        consumer_tracing.consumed(
            domain="booking", group="g", record=record, event=event, outcome="applied", started_ns=1, ended_ns=2
        )
    from_header, from_attribute = spans.get_finished_spans()
    assert from_header.parent is not None and from_attribute.parent is not None
    assert from_header.parent.span_id == 0x1111111111111111
    assert from_attribute.parent.span_id == tracing.parse(IDP).span_id  # type: ignore[union-attr]
    assert from_header.kind == SpanKind.CONSUMER and from_header.name == "scimsync.booking.apply"
    attributes = dict(from_header.attributes or {})
    assert attributes["scimsync.replay"] is True and (from_attribute.attributes or {})["scimsync.replay"] is False
    assert {k: attributes[k] for k in ("scimsync.outcome", "scimsync.aggregate.id", "messaging.kafka.offset")} == {
        "scimsync.outcome": "applied",
        "scimsync.aggregate.id": USER,
        "messaging.kafka.offset": 41,
    }
    assert "ada@example.com" not in repr([dict(s.attributes or {}) for s in spans.get_finished_spans()])


def test_a_record_that_did_not_decode_still_gets_a_span(spans: InMemorySpanExporter) -> None:
    record = dataclasses.replace(stored(), traceparent=None)
    consumer_tracing.consumed(
        domain="workspace",
        group="g",
        record=SimpleNamespace(**{**vars(_record(record, [("traceparent", IDP.encode())])), "value": b"{"}),
        event=None,
        outcome="dead_lettered",
        started_ns=1,
        ended_ns=2,
    )
    (span,) = spans.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == tracing.parse(IDP).span_id  # type: ignore[union-attr]
    assert (span.attributes or {})["scimsync.outcome"] == "dead_lettered"
    assert span.status.status_code == trace.StatusCode.ERROR
