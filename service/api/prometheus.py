"""The API process's metrics, kept in memory and rendered as Prometheus text (format 0.0.4). No I/O here.

Cardinality, by default: the latency histogram is labelled by route *template* (`/scim/v2/{tenant_id}/Users/{id}`,
never the raw path), method and status class (2xx…5xx): about 15 templates x 5 methods x 5 classes at most, in
practice ~40 series x 14 buckets per pod. A `tenant` label multiplies that by the number of tenants, so it is
opt-in (`SCIMSYNC_METRICS_TENANT_LABEL=true`) for installations with few tenants; per-tenant questions are
otherwise answered by the `scim_requests` audit table.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

# Seconds. SCIM writes take 2-20 ms here; the upper buckets catch Postgres trouble.
BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = "scimsync_http_request_duration_seconds"
REFUSED = "scimsync_scim_refused_total"
RATE_LIMITED = "scimsync_rate_limited_total"
STREAM_STALLS = "scimsync_stream_stalls_total"
UNPUBLISHED = "scimsync_outbox_unpublished_events"
OLDEST_AGE = "scimsync_outbox_oldest_unpublished_age_seconds"
PARKED = "scimsync_relay_parked_events"
HELD = "scimsync_outbox_held_events"
HELD_AGE = "scimsync_outbox_oldest_held_age_seconds"
DEPENDENCY_UP = "scimsync_dependency_up"
GAUGES_AGE = "scimsync_metrics_gauges_age_seconds"

HELP = {
    REQUEST_SECONDS: ("histogram", "SCIM API request latency by route template, method and status class."),
    REFUSED: ("counter", "SCIM requests answered with an error (4xx/5xx), by status and scimType."),
    RATE_LIMITED: ("counter", "SCIM requests refused with 429 because their tenant was over its rate limit."),
    STREAM_STALLS: (
        "counter",
        "Streamed responses (big groups) cut off because their client stopped reading.",
    ),
    UNPUBLISHED: ("gauge", "Events in the event log not yet published to Kafka."),
    OLDEST_AGE: ("gauge", "Age of the oldest event the relay may publish (0 if none): the relay's lag."),
    PARKED: (
        "gauge",
        "Events Kafka refused for good, parked in the event log: each stops its user's or group's stream.",
    ),
    HELD: (
        "gauge",
        "Deprovisionings held by the deprovisioning brake (`scimsync holds list`), and their users' later events.",
    ),
    HELD_AGE: ("gauge", "Seconds the oldest held deprovisioning has waited for `scimsync holds release` (0 if none)."),
    DEPENDENCY_UP: ("gauge", "1 when this API process reached the dependency at the last refresh, else 0."),
    GAUGES_AGE: ("gauge", "Seconds since the gauges above were refreshed (they are refreshed in the background)."),
}

Labels = tuple[tuple[str, str], ...]


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.buckets[index] += 1  # cumulated when rendered
        self.count += 1
        self.total += seconds


@dataclass
class ApiMetrics:
    tenant_label: bool = False
    requests: dict[Labels, _Histogram] = field(default_factory=lambda: defaultdict(_Histogram))
    refused_counts: dict[Labels, int] = field(default_factory=lambda: defaultdict(int))
    rate_limited_counts: dict[Labels, int] = field(default_factory=lambda: defaultdict(int))
    stream_stalls: int = 0
    gauges: dict[str, dict[Labels, float]] = field(default_factory=dict)
    gauges_refreshed_at: float | None = None  # time.monotonic() of the last refresh

    def _tenant(self, tenant_id: str | None) -> Labels:
        return (("tenant", tenant_id or ""),) if self.tenant_label else ()

    def observe_request(
        self, route: str, method: str, status: int, seconds: float, tenant_id: str | None = None
    ) -> None:
        labels = (("route", route), ("method", method), ("status_class", status_class(status)))
        self.requests[labels + self._tenant(tenant_id)].observe(seconds)

    def refused(self, status: int, scim_type: str | None) -> None:
        self.refused_counts[(("status", str(status)), ("scim_type", scim_type or "none"))] += 1

    def rate_limited(self, tenant_id: str | None = None) -> None:
        self.rate_limited_counts[self._tenant(tenant_id)] += 1

    def stream_stalled(self) -> None:
        self.stream_stalls += 1

    def set_gauges(self, values: dict[str, dict[Labels, float]], now: float) -> None:
        self.gauges = values
        self.gauges_refreshed_at = now

    def render(self, now: float) -> str:
        out: list[str] = []
        self._header(out, REQUEST_SECONDS)
        for labels, hist in sorted(self.requests.items()):
            cumulative = 0
            for bound, n in zip(BUCKETS, hist.buckets, strict=True):
                cumulative += n
                out.append(f"{REQUEST_SECONDS}_bucket{_fmt((*labels, ('le', repr(bound))))} {cumulative}")
            out.append(f"{REQUEST_SECONDS}_bucket{_fmt((*labels, ('le', '+Inf')))} {hist.count}")
            out.append(f"{REQUEST_SECONDS}_count{_fmt(labels)} {hist.count}")
            out.append(f"{REQUEST_SECONDS}_sum{_fmt(labels)} {hist.total:.6f}")
        self._header(out, REFUSED)
        out += [f"{REFUSED}{_fmt(k)} {v}" for k, v in sorted(self.refused_counts.items())]
        self._header(out, RATE_LIMITED)
        rate_limited = dict(self.rate_limited_counts)
        if not rate_limited and not self.tenant_label:
            rate_limited[()] = 0  # present from the start, so rate() works from the first 429
        out += [f"{RATE_LIMITED}{_fmt(k)} {v}" for k, v in sorted(rate_limited.items())]
        self._header(out, STREAM_STALLS)
        out.append(f"{STREAM_STALLS} {self.stream_stalls}")
        for name in (UNPUBLISHED, OLDEST_AGE, PARKED, HELD, HELD_AGE, DEPENDENCY_UP):
            series = self.gauges.get(name)
            if series:
                self._header(out, name)
                out += [f"{name}{_fmt(k)} {_number(v)}" for k, v in sorted(series.items())]
        if self.gauges_refreshed_at is not None:
            self._header(out, GAUGES_AGE)
            out.append(f"{GAUGES_AGE} {now - self.gauges_refreshed_at:.3f}")
        return "\n".join(out) + "\n"

    @staticmethod
    def _header(out: list[str], name: str) -> None:
        kind, text = HELP[name]
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
