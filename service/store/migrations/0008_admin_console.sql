-- The provisioning admin console.

-- Several live bearer tokens per tenant, so a rotation can leave the old one working for a grace period.
-- Kept only as SHA-256 (plus the last four characters, to tell them apart on the page). A token works while
-- revoked_at is NULL and expires_at is NULL or in the future.
CREATE TABLE tenant_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    last_four   text,  -- NULL for tokens issued before this table existed
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX tenant_tokens_tenant ON tenant_tokens (tenant_id);

INSERT INTO tenant_tokens (id, tenant_id, token_hash, created_at)
SELECT gen_random_uuid(), id, token_hash, created_at FROM tenants WHERE token_hash IS NOT NULL AND length(token_hash) = 32;

-- tenants.token_hash is superseded by tenant_tokens: emptied so no stale hash looks live, kept (nullable) so older
-- tooling that still inserts it keeps working.
ALTER TABLE tenants ALTER COLUMN token_hash DROP NOT NULL;
UPDATE tenants SET token_hash = NULL;

-- One-time setup links and the sessions they start: only hashes are stored, like SCIM tokens.
CREATE TABLE admin_links (
    token_hash  bytea PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    label       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE TABLE admin_sessions (
    token_hash   bytea PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    label        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz
);

-- What admins did on the page (and operators with the CLI), shown in the tenant's activity.
CREATE TABLE admin_actions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     text
);
CREATE INDEX admin_actions_tenant_at ON admin_actions (tenant_id, at);

-- The request log learns who called (User-Agent, which token), what we answered to a failure (the SCIM error),
-- and, for failures only, a redacted copy of the request body, forgotten after 30 days.
ALTER TABLE scim_requests
    ADD COLUMN user_agent text,
    ADD COLUMN token_id   uuid,
    ADD COLUMN scim_type  text,
    ADD COLUMN detail     text,
    ADD COLUMN body       jsonb;
CREATE INDEX scim_requests_token_at ON scim_requests (token_id, at) WHERE token_id IS NOT NULL;
CREATE INDEX scim_requests_tenant_id ON scim_requests (tenant_id, id);
CREATE INDEX scim_requests_tenant_failed ON scim_requests (tenant_id, id) WHERE status >= 400;
CREATE INDEX scim_requests_with_body ON scim_requests (at) WHERE body IS NOT NULL;
