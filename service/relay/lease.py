"""The relay lock as a lease: a vanished leader loses it within seconds, and stops publishing before that.

The active relay holds a session advisory lock (outbox.RELAY_LOCK). A session advisory lock lasts as long as the
session, and without help Postgres keeps the session of a leader whose host lost power or sits behind a network
partition until the kernel gives up on the socket: about two hours on Linux defaults. Nothing is published
meanwhile. So the relay's session carries a lease of `seconds` (SCIMSYNC_RELAY_LEASE_SECONDS, default 10):

Server side (server_settings of the relay's session, so no server configuration is needed):
- `idle_session_timeout` = the lease: Postgres ends a session that sent no statement for that long, and the
  lock goes with it. A live relay talks to Postgres at least once a second (claim, sleep lock, poll), and while
  Kafka is away before and after each pause between sends (a send ends by `deadline()`, a pause lasts at most half
  the lease), so only a leader that is gone (or cut off) stays quiet that long.
  This also covers a frozen network path, where TCP keepalives may still be answered by a middlebox.
- `idle_in_transaction_session_timeout` = the lease (the relay runs no long transactions);
  `tcp_keepalives_idle/interval/count` (2 s, 2 s, 3) and `tcp_user_timeout` = the lease: a dead peer's socket
  is dropped even while a statement is running or a result is being sent.

Client side, the leader checks that it still holds the lease:
- every statement has a timeout (`statement_timeout_s`, the lease) and connecting too: a leader whose Postgres
  stopped answering fails its next statement, logs `relay.lease_lost`, closes its socket and publishes nothing
  more until it holds the lock again. (Not shorter: marking a batch published may wait for row locks, e.g. a
  user's deletion erasing its events, and a relay that gave up then would only re-send the batch. Safety does
  not rest on this timeout: the relay does one thing at a time, so while a statement waits nothing is sent,
  and the next send needs a fresh answer first);
- a batch may be sent to Kafka only until `deadline()`: the start of the leader's last statement that Postgres
  answered, plus the lease, minus a margin (a fifth of the lease). A send still running then is aborted
  (publisher.py) and retried only after a fresh round trip to Postgres.

The split-brain window. Postgres can end the session no earlier than `lease` after it finished the leader's last
statement, which is after that statement began; a standby can take the lock only after that (it tries once a
second). The leader stops sending at that start + lease - margin, so it is done `margin` (2 s by default) before
any standby can begin; the margin covers a produce request already on its way to the broker when the send was
aborted. What remains possible, and what the event contract allows: the leader's last batch was sent but not
marked published (the mark never got an answer), so the standby sends it again; those duplicates come after the
originals, and may come after newer events of the same user, which consumers skip by version. If the leader's
clock stalled (a paused VM) past the deadline, the check on resuming aborts the send; a produce request the
paused process had already handed to the network before the pause is the one case the margin can't bound.

Failover time: a standby takes over within the lease plus its one-second retry (about 11 s by default) of the
leader's last statement, so within 15 s of its host vanishing.
"""

from __future__ import annotations

import asyncio
from typing import Any

DEFAULT_LEASE_S = 10.0


class Lease:
    def __init__(self, seconds: float = DEFAULT_LEASE_S) -> None:
        self.seconds = seconds
        self.margin = seconds / 5
        self.statement_timeout_s = seconds
        self._answered_at: float | None = None  # loop time at which the last answered statement began

    def server_settings(self) -> dict[str, str]:
        lease_ms = str(int(self.seconds * 1000))
        return {
            "application_name": "scimsync-relay",
            "idle_session_timeout": lease_ms,
            "idle_in_transaction_session_timeout": lease_ms,
            "tcp_keepalives_idle": "2",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": lease_ms,
        }

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    def answered(self, began_at: float) -> None:
        """Postgres answered a statement that began at `began_at` (loop time): the lease runs from there."""
        self._answered_at = began_at

    def deadline(self) -> float:
        """Loop time until which the leader may send to Kafka."""
        if self._answered_at is None:
            return self.now()
        return self._answered_at + self.seconds - self.margin

    def seconds_since_answer(self) -> float | None:
        return None if self._answered_at is None else round(self.now() - self._answered_at, 3)

    def forget(self) -> None:
        self._answered_at = None

    async def renew(self, conn: Any) -> None:
        """A round trip to Postgres (raises when it doesn't answer in time): the lease runs from now."""
        began = self.now()
        await conn.fetchval("SELECT 1")
        self.answered(began)
