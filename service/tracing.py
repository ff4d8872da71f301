"""Tracing in the service: one trace from the identity provider's SCIM request to every consumer.

    SCIM request (SERVER span, service/api/middleware.py; parent: the request's `traceparent` header, if any)
      └ scimsync.outbox.write (one per store write; its `traceparent` is stored with the events it writes)
          └ scimsync.relay.publish (PRODUCER, one per event sent; its `traceparent` goes in the Kafka header)
              └ scimsync.booking.apply / scimsync.workspace.apply (CONSUMER, consumers/runtime/tracing.py)

A replayed or repaired event (`scimsync replay`, `reconcile --fix`) is published from its stored `traceparent`
again, so it joins the trace of the change it carries, marked `scimsync.replay=true` (Kafka header
`scimsync_replay: 1`). The CloudEvents `traceparent` attribute is always the stored one, where the change began
(the CloudEvents distributed-tracing extension: the starting trace, not each hop's).

With tracing off (no OTLP endpoint) no span object is made anywhere: the request's own `traceparent` header, if
it sent one, is stored and published unchanged, so a trace the identity provider started still reaches consumers
that trace. The switch, the parsing and the consumers' spans: consumers/runtime/tracing.py.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from consumers.runtime.tracing import (
    REPLAY_ATTRIBUTE,
    REPLAY_HEADER,
    TRACEPARENT,
    enabled,
    format_traceparent,
    normalise,
    parent,
    parse,
    setup,
    shutdown,
    tracer,
)

__all__ = [
    "REPLAY_ATTRIBUTE",
    "REPLAY_HEADER",
    "TRACEPARENT",
    "OutboxWrite",
    "enabled",
    "format_traceparent",
    "incoming",
    "normalise",
    "parent",
    "parse",
    "publishing",
    "setup",
    "shutdown",
    "tracer",
]

# With tracing off: the request's own `traceparent` (normalised), stored with the events it writes. Set by the
# request middleware for the request's task; None when the request came without one.
incoming: ContextVar[str | None] = ContextVar("scimsync_incoming_traceparent", default=None)


class OutboxWrite:
    """`with OutboxWrite("user", id) as write:` around a store write; pass `write.traceparent` with every event
    row it inserts, and `write.event(type)` once the type is known.

    Tracing on: a `scimsync.outbox.write` span (a child of the request's), and `traceparent` is that span's.
    Off: no span, `traceparent` is the request's own header (or None)."""

    __slots__ = ("_span", "aggregate", "aggregate_id", "traceparent")

    def __init__(self, aggregate: str, aggregate_id: str) -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self._span: Span | None = None
        self.traceparent: str | None = None

    def __enter__(self) -> OutboxWrite:
        if not enabled():
            self.traceparent = incoming.get()
            return self
        self._span = tracer().start_span(
            "scimsync.outbox.write",
            kind=SpanKind.INTERNAL,
            attributes={"scimsync.aggregate": self.aggregate, "scimsync.aggregate.id": self.aggregate_id},
        )
        self.traceparent = format_traceparent(self._span.get_span_context())
        return self

    def event(self, event_type: str, version: int | None = None) -> None:
        """What the write records (the first event's type when it writes several)."""
        if self._span is not None:
            self._span.set_attribute("scimsync.event.type", event_type)
            if version is not None:
                self._span.set_attribute("scimsync.event.version", version)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._span is None:
            return
        if error is not None:
            # The type only: a message may quote what the client sent.
            self._span.set_status(trace.StatusCode.ERROR, type(error).__name__)
        self._span.end()


def publishing(event: Any, topic: str, replay: bool) -> Span:
    """The PRODUCER span of one event sent to Kafka, a child of its stored `traceparent`. Only while `enabled()`."""
    return tracer().start_span(
        "scimsync.relay.publish",
        context=parent(event.traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": event.id,
            "scimsync.event.type": event.type,
            "scimsync.event.sequence": event.sequence,
            "scimsync.event.version": event.version,
            "scimsync.aggregate": event.aggregate,
            "scimsync.aggregate.id": event.subject,
            "scimsync.tenant_id": event.tenant_id,
            REPLAY_ATTRIBUTE: replay,
        },
    )
