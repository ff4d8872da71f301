"""Counters and per-partition lag, rendered as Prometheus text on a tiny HTTP/1.1 `/metrics` endpoint.

aiohttp isn't a dependency: `asyncio.start_server` and one hand-written response are enough for a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

COUNTERS = {
    "applied": "Events applied to the domain (the user's version moved forward).",
    "skipped_duplicate": "Events skipped because the domain already holds this or a newer version of the user.",
    "skipped_unknown_type": "Events of a type this domain has no handler for.",
    "dead_lettered": "Events sent to the dead-letter topic (invalid, or failing every attempt).",
    "handler_retries": "Handler attempts that failed and were retried.",
    "transient_failures": "Batches put back because the database was unavailable.",
    "commit_failures": "Offset commits rejected (rebalance); the events are redelivered and skipped.",
    "held": "Events of a delta stream that arrived past a gap in their entity's versions: they wait (held).",
    "released": "Held events applied once the missing version arrived.",
}


@dataclass
class Metrics:
    group: str
    topics: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))  # over all topics
    by_topic: dict[str, dict[str, int]] = field(default_factory=dict)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> records not committed
    # Delta streams (runtime/gaps.py), over the whole group (read from the database, not only this member's part):
    held_streams: dict[str, int] = field(default_factory=dict)  # topic -> entities held at a gap
    oldest_held_age: dict[str, float] = field(default_factory=dict)  # topic -> seconds the oldest held event waits
    # 1 while the consumer waits for an unfinished rebuild (process.py): it holds no partition then, so reports no lag.
    rebuild_pending: int = 0

    def __post_init__(self) -> None:
        for topic in self.topics:
            self.by_topic.setdefault(topic, dict.fromkeys(COUNTERS, 0))

    def add(self, name: str, n: int = 1, topic: str | None = None) -> None:
        self.counts[name] += n
        if topic is not None:
            self.by_topic.setdefault(topic, dict.fromkeys(COUNTERS, 0))[name] += n

    @property
    def handled(self) -> int:
        """Records taken off the topics for good: applied, skipped, or dead-lettered."""
        c = self.counts
        return c["applied"] + c["skipped_duplicate"] + c["skipped_unknown_type"] + c["dead_lettered"] + c["held"]

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def render(self) -> str:
        lines = []
        for name, help_text in COUNTERS.items():
            metric = f"scimsync_consumer_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            for topic, counts in sorted(self.by_topic.items()):
                lines.append(f'{metric}{{group="{self.group}",topic="{topic}"}} {counts[name]}')
        lines += [
            "# HELP scimsync_consumer_lag Records in the partition not yet applied and committed by this group.",
            "# TYPE scimsync_consumer_lag gauge",
        ]
        lines += [
            f'scimsync_consumer_lag{{group="{self.group}",topic="{topic}",partition="{p}"}} {n}'
            for (topic, p), n in sorted(self.lag.items())
        ]
        for name, values, help_text in (
            ("held_streams", self.held_streams, "Entities (groups) whose stream is held at a gap in its versions."),
            ("oldest_held_age_seconds", self.oldest_held_age, "How long the oldest held event has waited."),
        ):
            metric = f"scimsync_consumer_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            lines += [f'{metric}{{group="{self.group}",topic="{t}"}} {v:g}' for t, v in sorted(values.items())]
        lines += [
            "# HELP scimsync_consumer_rebuild_pending 1 while this consumer waits for an unfinished rebuild.",
            "# TYPE scimsync_consumer_rebuild_pending gauge",
            f'scimsync_consumer_rebuild_pending{{group="{self.group}"}} {self.rebuild_pending}',
        ]
        return "\n".join(lines) + "\n"


async def serve(render: Callable[[], str], port: int, host: str = "127.0.0.1") -> asyncio.Server:
    """Serve `GET /metrics` (the text `render()` returns) until the returned server is closed.

    The API serves its own metrics with this too, on its internal metrics port (SCIMSYNC_METRICS_PORT).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method == "GET" and path.split("?", 1)[0] == "/metrics":
                status, body, ctype = "200 OK", render().encode(), "text/plain; version=0.0.4; charset=utf-8"
            else:
                status, body, ctype = "404 Not Found", b"not found\n", "text/plain; charset=utf-8"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
