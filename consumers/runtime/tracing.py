"""Distributed tracing (OpenTelemetry): the W3C `traceparent`, and the one switch every process shares.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: then `setup` builds an
SDK tracer provider that exports over OTLP/HTTP in batches (the SDK's `OTEL_*` variables apply: sampler, batch
delay, headers, timeout). Otherwise nothing is installed and `enabled()` is False: callers check it before they
build anything, so tracing costs nothing when it is off. A `traceparent` that came with the work (an identity
provider's request header, a stored or published event) is still passed on unchanged, so a trace started
upstream continues in whatever downstream process traces.

`traceparent` is `00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>` (W3C Trace Context). Spans carry
ids and types only, never personal data (no userName, emails, names, no query strings).

Shared by the service (service/tracing.py builds on this module) and the consumers, which never import service.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, Tracer

TRACEPARENT = "traceparent"  # the Kafka header, the CloudEvents attribute, the HTTP header
REPLAY_HEADER = "scimsync_replay"  # `1` on events re-published from the log (`scimsync replay`, `reconcile --fix`)
REPLAY_ATTRIBUTE = "scimsync.replay"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_SHUTDOWN_WAIT_S = 5.0  # at exit, how long spans still queued may take to leave (a collector that doesn't answer)

# version-traceid-parentid-flags; a later version may append fields after another `-` (W3C Trace Context §3.2).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")

_tracer: Tracer | None = None
_provider: Any = None


def configured(environ: dict[str, str] | None = None) -> bool:
    """Is an OTLP endpoint set (and the SDK not switched off with OTEL_SDK_DISABLED)?"""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def setup(service_name: str, exporter: Any = None) -> bool:
    """Trace this process if an endpoint is configured (or, in tests, into `exporter`); True if tracing is on.

    `OTEL_SERVICE_NAME` overrides `service_name`. An `exporter` given is fed span by span (SimpleSpanProcessor),
    the OTLP exporter in batches on a background thread."""
    global _tracer, _provider
    if exporter is None and not configured():
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    shutdown()
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), shutdown_on_exit=False)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("scimsync")
    return True


def shutdown(wait_s: float = _SHUTDOWN_WAIT_S) -> None:
    """Export what is still queued and stop tracing; waits at most `wait_s` (the exporter may be unreachable)."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    flushing = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    flushing.start()
    flushing.join(wait_s)


def enabled() -> bool:
    return _tracer is not None


def tracer() -> Tracer:
    """The process's tracer; only while `enabled()`."""
    assert _tracer is not None, "tracing is off: check enabled() first"
    return _tracer


def parse(value: str | bytes | None) -> SpanContext | None:
    """A valid `traceparent` as a remote span context; None for anything else (absent, malformed, all-zero ids)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    context = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16) & 0x01)
    )
    return context if context.is_valid else None


def format_traceparent(context: SpanContext) -> str:
    """The version-00 `traceparent` of a span context."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 0x01:02x}"


def normalise(value: str | bytes | None) -> str | None:
    """`value` as a version-00 `traceparent` if it is a valid one, else None: what may be stored or passed on."""
    context = parse(value)
    return None if context is None else format_traceparent(context)


def parent(value: str | bytes | None) -> Context | None:
    """A context whose current span is the `traceparent`'s (to start a child span in); None: start a new trace."""
    context = parse(value)
    return None if context is None else trace.set_span_in_context(NonRecordingSpan(context))


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """A Kafka record's header value by name (the first), or None."""
    for key, value in headers or ():
        if key == name:
            return value
    return None


def consumed(
    *,
    domain: str,
    group: str,
    record: Any,
    event: Any,
    outcome: str,
    started_ns: int,
    ended_ns: int,
) -> None:
    """One CONSUMER span for a record a consumer handled (`event` None: it could not be decoded).

    Its parent is the record's `traceparent` header (the relay's publish span), else the event's `traceparent`
    attribute (where the change began); neither: a trace of its own. Only while `enabled()`."""
    headers = record.headers
    carried = header(headers, TRACEPARENT) or (event.traceparent if event is not None else None)
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.consumer.group.name": group,
        "scimsync.consumer.domain": domain,
        "scimsync.outcome": outcome,
        REPLAY_ATTRIBUTE: header(headers, REPLAY_HEADER) == b"1",
        "scimsync.repair": header(headers, "scimsync_repair") == b"1",
    }
    if event is not None:
        attributes.update(
            {
                "messaging.message.id": event.id,
                "scimsync.event.type": event.type,
                "scimsync.tenant_id": event.tenant_id,
                "scimsync.aggregate.id": event.subject,
                "scimsync.event.version": event.version,
                "scimsync.event.sequence": event.sequence,
            }
        )
    span = tracer().start_span(
        f"scimsync.{domain}.apply",
        context=parent(carried),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        start_time=started_ns,
    )
    if outcome == "dead_lettered":
        span.set_status(trace.StatusCode.ERROR, "dead-lettered")
    span.end(end_time=ended_ns)
