-- Tenants: one customer organisation each. The bearer token is kept only as its SHA-256.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    token_hash  bytea NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Users: `resource` is the canonical SCIM representation (no id/meta/schemas); the columns beside it
-- are copies kept for uniqueness, lookups and paging. `seq` gives Okta's import paging a stable order.
CREATE TABLE users (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    user_name   text NOT NULL,
    external_id text,
    active      boolean NOT NULL,
    version     bigint NOT NULL,
    resource    jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- userName is unique per tenant regardless of case: the constraint, not a pre-check, decides races.
CREATE UNIQUE INDEX users_tenant_user_name ON users (tenant_id, lower(user_name));
CREATE INDEX users_tenant_external_id ON users (tenant_id, external_id);
CREATE INDEX users_tenant_seq ON users (tenant_id, seq);

-- The event log (transactional outbox): one row per accepted change, in the same transaction.
-- `sequence` is the global position; per user, sequences follow commit order because writes to one
-- user serialise on its row lock before the event is inserted.
CREATE TABLE events (
    sequence     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    tenant_id    uuid NOT NULL,
    aggregate    text NOT NULL,
    subject      uuid NOT NULL,
    type         text NOT NULL,
    version      bigint NOT NULL,
    occurred_at  timestamptz NOT NULL,
    data         jsonb NOT NULL,
    published_at timestamptz
);
CREATE INDEX events_unpublished ON events (sequence) WHERE published_at IS NULL;
CREATE INDEX events_subject ON events (tenant_id, subject, sequence);

-- Audit of every SCIM request: who, what, outcome. Never tokens or bodies.
CREATE TABLE scim_requests (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    tenant_id   uuid,
    method      text NOT NULL,
    path        text NOT NULL,
    status      integer NOT NULL,
    request_id  text NOT NULL,
    duration_ms double precision NOT NULL
);
CREATE INDEX scim_requests_tenant_at ON scim_requests (tenant_id, at);
