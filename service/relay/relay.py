"""The relay loop: unpublished events from the Postgres event log → Kafka, in sequence order, at least once.

    1. Take the relay lock (a session advisory lock) on a dedicated connection; while another relay holds
       it, retry every second. That relay's session ending (exit, crash, kill -9, lost connection)
       releases the lock and a standby takes over. The session is a lease (lease.py): Postgres ends the
       session of a leader that went quiet (host gone, network cut) after SCIMSYNC_RELAY_LEASE_SECONDS,
       and the leader stops publishing before that (`relay.lease_lost`).
    2. LISTEN for the insert trigger's wake-up (sent only while the relay sleeps, see _wait_for_work);
       poll anyway every `poll_interval` seconds.
    3. Claim up to `batch_size` events in sequence order, send them all, wait for every acknowledgement,
       THEN mark them published in one UPDATE. A crash between send and mark re-sends the batch later.
    4. Kafka down: log `relay.kafka_unavailable`, back off (capped exponential), re-send the same batch.
       Nothing is skipped, so nothing is lost; the API never waits for any of this. Before every re-send, events
       of users deleted since the claim are re-read erased: a held batch must not publish their data. (The first
       send follows the claim within milliseconds: a delete committing then is one committing just after it.)
    5. A record Kafka refuses for good (publisher.PERMANENT: too large, invalid, not authorised) is parked
       (outbox gate, in the same transaction as the batch's mark) and logged once as `relay.event_parked`;
       the later events of its user or group stay unpublished behind it, every other stream goes on.
       `scimsync relay parked` lists parked events, `scimsync relay resend` lets the relay try them again.
    6. SIGTERM/SIGINT: finish the batch in flight, mark it, close, return. A batch still waiting for Kafka
       is left unmarked for the next relay.

All of the relay's SQL runs on the connection that holds the lock: if that session is gone, so is the
right to mark anything published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import asyncpg

from service import logs
from service.domain.events import StoredEvent
from service.relay.lease import DEFAULT_LEASE_S, Lease
from service.relay.publisher import KafkaUnavailable, Outcome, Publisher
from service.settings import Settings
from service.store import outbox
from service.store.pool import connect

log = logs.get(__name__)

# InternalClientError: a restart's FATAL reaching the idle (LISTENing) session leaves asyncpg's protocol mid-state
# until the socket closes; the next query fails inside the client ("another operation is in progress"). It is the
# session going away like any other: reconnect (it used to end the relay process).
_DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
_BUSY_PAUSE = 0.005  # seconds between looks while writers are committing: a few ms of latency, no NOTIFY


class Relay:
    def __init__(
        self,
        settings: Settings,
        batch_size: int = 500,
        replication_factor: int = 1,
        poll_interval: float = 1.0,
        lock_retry_interval: float = 1.0,
        max_backoff: float = 5.0,
        lease_seconds: float = DEFAULT_LEASE_S,
    ) -> None:
        self._database_url = settings.database_url
        self._batch_size = batch_size
        self._lease = Lease(lease_seconds)
        self._poll_interval = min(poll_interval, lease_seconds / 4)  # a live leader never idles near its lease
        self._lock_retry_interval = lock_retry_interval
        self._max_backoff = min(max_backoff, lease_seconds / 2)  # a pause between sends stays well inside the lease
        self._publisher = Publisher(
            settings.kafka_bootstrap_servers,
            settings.topics(),
            settings.topic_partitions,
            replication_factor,
            security=settings.kafka.client_options(),
        )
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Ask the relay to stop after the batch in flight (signal-handler safe)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Until stopped: hold the lock and publish; reconnect with back-off when Postgres goes away."""
        backoff = _Backoff(self._max_backoff)
        try:
            while not self._stopping.is_set():
                conn: Any = None
                try:
                    conn = await connect(
                        self._database_url,
                        timeout=self._lease.seconds / 2,
                        command_timeout=self._lease.statement_timeout_s,
                        server_settings=self._lease.server_settings(),
                    )
                    if await self._acquire(conn):
                        backoff.reset()
                        await self._publish(conn)
                except _DATABASE_ERRORS as exc:
                    if self._lease.seconds_since_answer() is not None:
                        log.warning(
                            "relay.lease_lost",
                            error=type(exc).__name__,
                            seconds_since_answer=self._lease.seconds_since_answer(),
                            lease_seconds=self._lease.seconds,
                        )
                    if conn is not None:
                        conn.terminate()  # a session that doesn't answer: no goodbye, just close the socket
                        conn = None
                    delay = backoff.next()
                    log.warning("relay.database_unavailable", error=type(exc).__name__, retry_in=delay)
                    await self._sleep(delay)
                finally:
                    self._lease.forget()  # publishing only resumes once the lock is held again
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(conn.close(), 5)
        finally:
            await self._publisher.close()
            log.info("relay.stopped")

    async def _acquire(self, conn: Any) -> bool:
        """Wait for the relay lock; False if asked to stop first."""
        waiting = False
        while not self._stopping.is_set():
            began = self._lease.now()
            if await outbox.try_lock_relay(conn):
                self._lease.answered(began)
                log.info("relay.active", topics=sorted(self._publisher.topics.values()), batch_size=self._batch_size)
                return True
            if not waiting:
                log.info("relay.standby", reason="another relay holds the lock")
                waiting = True
            await self._sleep(self._lock_retry_interval)
        return False

    async def _publish(self, conn: Any) -> None:
        await conn.add_listener(outbox.CHANNEL, self._on_notify)
        while not self._stopping.is_set():
            self._wake.clear()  # before the claim: a wake-up during this round means "look again"
            began = self._lease.now()
            batch = await outbox.claim_batch(conn, self._batch_size)
            self._lease.answered(began)
            if batch:
                outcome = await self._send(conn, batch)
                if outcome is None:
                    return  # stopped while Kafka was away: the batch stays unmarked
                parked = [(refused.event.sequence, refused.reason) for refused in outcome.refused]
                await outbox.record_outcome(conn, [event.sequence for event in outcome.sent], parked)
                self._log_parked(outcome)
                if outcome.sent:
                    log.info("outbox.published", count=len(outcome.sent), last_sequence=outcome.sent[-1].sequence)
                if len(batch) == self._batch_size:
                    continue  # a backlog: no waiting
            await self._wait_for_work(conn)

    async def _wait_for_work(self, conn: Any) -> None:
        """Sleep until a writer notifies (or the poll interval passes), without missing a wake-up.

        Writers notify only while we hold the sleeping lock; a writer that didn't notify holds it in shared
        mode until it commits, so we can't fall asleep before its event is visible to the re-check below.
        """
        if not await outbox.try_fall_asleep(conn):
            await self._sleep(_BUSY_PAUSE)  # writers in flight: their events are about to be visible
            return
        try:
            if await outbox.has_ready(conn):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            await outbox.wake_up(conn)

    async def _send(self, conn: Any, batch: list[StoredEvent]) -> Outcome | None:
        """Publish the batch, retrying with back-off until Kafka has taken or refused every event; None if stopped
        meanwhile.

        Each attempt ends by the lease's deadline; a retry first renews the lease (a round trip to Postgres,
        which raises if the session is gone: then this relay is no longer the leader) and re-reads erasures:
        time has passed since the claim, and a user deleted meanwhile must go out erased. The lease is renewed
        before each pause too: a send to a Kafka that doesn't answer uses the lease's whole window, and the pause
        after it would otherwise leave the session quiet past the lease, so Postgres would end it (and hand the
        lock over) while this leader is alive."""
        backoff = _Backoff(self._max_backoff)
        first = True
        while True:
            if not first:
                await self._lease.renew(conn)
                batch = await outbox.erase_deleted(conn, batch)
            first = False
            try:
                return await self._publisher.publish(batch, deadline=self._lease.deadline())
            except KafkaUnavailable as exc:
                delay = backoff.next()
                log.warning(
                    "relay.kafka_unavailable",
                    error=str(exc),
                    pending=len(batch),
                    first_sequence=batch[0].sequence,
                    retry_in=delay,
                )
            await self._lease.renew(conn)
            if await self._sleep(delay):
                return None

    @staticmethod
    def _log_parked(outcome: Outcome) -> None:
        for refused in outcome.refused:
            event = refused.event
            held_back = sum(
                1 for e in outcome.held_back if (e.tenant_id, e.subject) == (event.tenant_id, event.subject)
            )
            log.error(
                "relay.event_parked",
                sequence=event.sequence,
                tenant_id=event.tenant_id,
                aggregate=event.aggregate,
                subject=event.subject,
                type=event.type,
                reason=refused.reason,
                held_back=held_back,
            )

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early when asked to stop; True if stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()


class _Backoff:
    """0.5 s, 1 s, 2 s, … capped."""

    def __init__(self, cap: float, first: float = 0.5) -> None:
        self._cap, self._first, self._next = cap, first, first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._first


async def run(settings: Settings, batch_size: int = 500, replication_factor: int = 1) -> int:
    """`scimsync relay`: run until SIGTERM/SIGINT; exit status 0 after a graceful stop."""
    # aiokafka logs every failed reconnect (many a second while Kafka is down); the relay reports the
    # outage itself, once per retry, as relay.kafka_unavailable.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    relay = Relay(
        settings,
        batch_size=batch_size,
        replication_factor=replication_factor,
        lease_seconds=settings.relay_lease_seconds,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.stop)
    try:
        await relay.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
