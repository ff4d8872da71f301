"""Booking desks: what a person (through the CLI, later an API) can do. Eligibility comes from the events.

`book` locks the user's eligibility row while it checks and inserts, so a deactivation being applied at the
same moment either sees the new booking (and cancels it) or is seen by it (and the booking is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


class BookingRefused(Exception):
    """A booking that can't be made; `reason` is stable for callers (unknown_user, user_inactive, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Desk:
    id: str
    tenant_id: str
    name: str


@dataclass(frozen=True)
class Booking:
    id: str
    tenant_id: str
    user_id: str
    desk_id: str
    starts_at: datetime
    ends_at: datetime
    status: str
    cancel_reason: str | None
    booked_by_name: str | None


def _desk(row: Any) -> Desk:
    return Desk(str(row["id"]), str(row["tenant_id"]), row["name"])


def _booking(row: Any) -> Booking:
    return Booking(
        id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        user_id=str(row["user_id"]),
        desk_id=str(row["desk_id"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        status=row["status"],
        cancel_reason=row["cancel_reason"],
        booked_by_name=row["booked_by_name"],
    )


async def add_desk(conn: Any, tenant_id: str, name: str) -> Desk:
    try:
        row = await conn.fetchrow(
            "INSERT INTO booking.desks (tenant_id, name) VALUES ($1, $2) RETURNING id, tenant_id, name", tenant_id, name
        )
    except asyncpg.UniqueViolationError:
        raise BookingRefused("desk_exists", f"tenant already has a desk named {name!r}") from None
    return _desk(row)


async def list_desks(conn: Any, tenant_id: str) -> list[Desk]:
    sql = "SELECT id, tenant_id, name FROM booking.desks WHERE tenant_id = $1 ORDER BY name"
    rows = await conn.fetch(sql, tenant_id)
    return [_desk(r) for r in rows]


async def book(
    conn: Any, tenant_id: str, user_id: str, desk_id: str, starts_at: datetime, ends_at: datetime
) -> Booking:
    """Book a desk for an active user; raises BookingRefused."""
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise BookingRefused("invalid_period", "starts_at and ends_at must be timezone-aware")
    if ends_at <= starts_at:
        raise BookingRefused("invalid_period", "ends_at must be after starts_at")
    async with conn.transaction():
        user = await conn.fetchrow(
            "SELECT eligible, deleted, display_name, email FROM booking.users "
            "WHERE tenant_id = $1 AND user_id = $2 FOR SHARE",
            tenant_id,
            user_id,
        )
        if user is None:
            raise BookingRefused("unknown_user", "no such user (not provisioned, or not yet seen by booking)")
        if user["deleted"]:
            raise BookingRefused("user_deleted", "the user has been deleted")
        if not user["eligible"]:
            raise BookingRefused("user_inactive", "the user is deactivated")
        if await conn.fetchval("SELECT now() >= $1::timestamptz", ends_at):
            raise BookingRefused("invalid_period", "the period is over")
        # The desk row lock serialises bookings of one desk, so two overlapping bookings can't both pass the check.
        desk = await conn.fetchrow(
            "SELECT id FROM booking.desks WHERE id = $1 AND tenant_id = $2 FOR UPDATE", desk_id, tenant_id
        )
        if desk is None:
            raise BookingRefused("unknown_desk", "no such desk in this tenant")
        taken = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM booking.bookings WHERE desk_id = $1 AND status = 'confirmed' "
            "AND starts_at < $3 AND ends_at > $2)",
            desk_id,
            starts_at,
            ends_at,
        )
        if taken:
            raise BookingRefused("desk_taken", "the desk is already booked for part of that period")
        row = await conn.fetchrow(
            "INSERT INTO booking.bookings (tenant_id, user_id, desk_id, starts_at, ends_at, booked_by_name, "
            "booked_by_email) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            tenant_id,
            user_id,
            desk_id,
            starts_at,
            ends_at,
            user["display_name"],
            user["email"],
        )
    return _booking(row)


async def list_bookings(conn: Any, tenant_id: str, user_id: str | None = None) -> list[Booking]:
    rows = await conn.fetch(
        "SELECT * FROM booking.bookings WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id = $2) "
        "ORDER BY starts_at, id",
        tenant_id,
        user_id,
    )
    return [_booking(r) for r in rows]
