"""The deprovisioning brake: when an identity provider deprovisions too many people too fast, hold the rest.

A wrong assignment rule or a broken group in Okta/Entra deactivates hundreds of people in minutes, and every
downstream system would obey at once (bookings cancelled, members removed). Per tenant, deactivations and
deletions within a sliding window are counted; past the threshold, further ones are *held* in the outbox: the
identity provider still gets its success (our users table says what it said), but no consumer sees them until
an operator releases them (`scimsync holds release`). Once a tenant holds, every further deprovisioning is
held too, until released: a wave is reviewed as a whole.

This module is the policy only (no I/O); service/store/holds.py applies it inside the write's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from service.domain.errors import InvalidValue
from service.domain.users import DEACTIVATED, DELETED

DEPROVISIONING = (DEACTIVATED, DELETED)


@dataclass(frozen=True)
class BrakePolicy:
    """More than max(`minimum`, `percent`% of the tenant's active users) deprovisionings within `window`."""

    enabled: bool = True
    minimum: int = 50
    percent: int = 20
    window: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.minimum < 0 or not 0 <= self.percent <= 100 or self.window <= timedelta(0):
            raise InvalidValue("brake: minimum >= 0, percent 0..100 and a positive window")

    def threshold(self, population: int) -> int:
        """How many deprovisionings the window allows for a tenant of `population` users.

        `population` counts the users active at the window's start (active now plus those deprovisioned within
        the window), so the threshold does not shrink as the wave goes on.
        """
        return max(self.minimum, population * self.percent // 100)

    def exceeded(self, recent: int, active_now: int) -> bool:
        """True when `recent` deprovisionings in the window (this one included) are more than allowed."""
        return self.enabled and recent > self.threshold(active_now + recent)
