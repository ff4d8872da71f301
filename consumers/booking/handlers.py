"""Booking handlers. Eligibility follows the snapshot's `active`; losing it cancels the user's future bookings.

The runtime has already moved `booking.users.version` forward (and locked the row) when a handler runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumers.runtime import snapshot
from consumers.runtime.domain import Domain, Stream, user_handlers
from consumers.runtime.envelope import Event

# One statement (one round trip) per event: the user's row and their bookings, in CTEs on different tables.
# `$3` is the user's `active`; losing it cancels their future bookings. Kept bookings show the person's current
# name (rectification), not the one they had when booking.
USER_CHANGED = """
WITH person AS (
    UPDATE booking.users SET eligible = $3, deleted = false, display_name = $4, email = $5, site = $6,
        booking_role = $7, updated_at = now()
    WHERE tenant_id = $1 AND user_id = $2
)
UPDATE booking.bookings AS b SET
    booked_by_name = $4,
    booked_by_email = $5,
    status = CASE WHEN b_state.future AND NOT $3 THEN 'cancelled' ELSE b.status END,
    cancel_reason = CASE WHEN b_state.future AND NOT $3 THEN 'user_deactivated' ELSE b.cancel_reason END,
    cancelled_at = CASE WHEN b_state.future AND NOT $3 THEN now() ELSE b.cancelled_at END
FROM (
    SELECT id, status = 'confirmed' AND starts_at > now() AS future FROM booking.bookings
    WHERE tenant_id = $1 AND user_id = $2
) AS b_state
WHERE b.id = b_state.id AND (
    b.booked_by_name IS DISTINCT FROM $4 OR b.booked_by_email IS DISTINCT FROM $5 OR (b_state.future AND NOT $3)
)
"""

# Future bookings cancelled, past ones kept without personal data, the user remembered as deleted.
USER_DELETED = """
WITH person AS (
    UPDATE booking.users SET eligible = false, deleted = true, display_name = NULL, email = NULL, site = NULL,
        booking_role = NULL, updated_at = now()
    WHERE tenant_id = $1 AND user_id = $2
)
UPDATE booking.bookings SET
    booked_by_name = NULL,
    booked_by_email = NULL,
    status = CASE WHEN status = 'confirmed' AND starts_at > now() THEN 'cancelled' ELSE status END,
    cancel_reason = CASE WHEN status = 'confirmed' AND starts_at > now() THEN 'user_deleted' ELSE cancel_reason END,
    cancelled_at = CASE WHEN status = 'confirmed' AND starts_at > now() THEN now() ELSE cancelled_at END
WHERE tenant_id = $1 AND user_id = $2
"""


async def user_changed(conn: Any, event: Event) -> None:
    """created / updated / deactivated / reactivated: the whole user is in the event."""
    data = event.data
    await conn.execute(
        USER_CHANGED,
        event.tenant_id,
        event.user_id,
        data["active"],
        snapshot.label(data),
        snapshot.email(data),
        snapshot.workplace(data, "site"),
        snapshot.workplace(data, "bookingRole"),
    )


async def user_deleted(conn: Any, event: Event) -> None:
    await conn.execute(USER_DELETED, event.tenant_id, event.user_id)


HANDLERS = user_handlers(user_changed, user_deleted)

# booking.users is the projection (who may book); desks and bookings are booking's own data, never cleared.
DOMAIN = Domain(
    name="booking",
    schema_sql=Path(__file__).with_name("schema.sql"),
    streams={"user_topic": Stream(versions_table="booking.users", handlers=HANDLERS)},
    projection=("booking.users",),
    rebuild_marker="booking.rebuild_pending",
)
