-- The booking domain: desks, bookings, and who may book. Owned by `scimsync consume booking`, applied at its
-- start-up; idempotent.
CREATE SCHEMA IF NOT EXISTS booking;

-- Who may book, from the user lifecycle events. Also the version gate (`version`): the row stays after
-- user.deleted (deleted = true, personal data cleared) so a replayed older event can't make them eligible.
CREATE TABLE IF NOT EXISTS booking.users (
    tenant_id     uuid NOT NULL,
    user_id       uuid NOT NULL,
    eligible      boolean NOT NULL DEFAULT false,
    deleted       boolean NOT NULL DEFAULT false,
    display_name  text,
    email         text,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- From the workplace extension: which site a person books at and what they may do (employee, teamLead,
-- facilityManager). Cleared on user.deleted with the rest.
ALTER TABLE booking.users ADD COLUMN IF NOT EXISTS site text;
ALTER TABLE booking.users ADD COLUMN IF NOT EXISTS booking_role text;

CREATE TABLE IF NOT EXISTS booking.desks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE IF NOT EXISTS booking.bookings (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    user_id          uuid NOT NULL,
    desk_id          uuid NOT NULL REFERENCES booking.desks (id),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
    cancel_reason    text,
    booked_by_name   text,  -- personal data: cleared on user.deleted
    booked_by_email  text,  -- personal data: cleared on user.deleted
    created_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz,
    CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS bookings_user ON booking.bookings (tenant_id, user_id, starts_at);
CREATE INDEX IF NOT EXISTS bookings_desk ON booking.bookings (desk_id, starts_at) WHERE status = 'confirmed';

-- Set while `scimsync rebuild booking` has cleared the projection and not finished (it dies, say, before committing its
-- offsets). The consumer of that group waits while its row exists; run the rebuild again (consumers/rebuild.py).
CREATE TABLE IF NOT EXISTS booking.rebuild_pending (
    group_id    text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now()
);
