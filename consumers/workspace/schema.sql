-- The workspace domain: the member directory the rest of the platform reads. Owned by `scimsync consume workspace`,
-- applied at its start-up; idempotent.
CREATE SCHEMA IF NOT EXISTS workspace;

-- The version gate: the last userversion applied per user. Outlives the member row, so a replayed older
-- event can't bring a deleted member back.
CREATE TABLE IF NOT EXISTS workspace.versions (
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE IF NOT EXISTS workspace.members (
    tenant_id     uuid NOT NULL,
    user_id       uuid NOT NULL,
    user_name     text NOT NULL,
    display_name  text,
    given_name    text,
    family_name   text,
    email         text,
    department    text,
    active        boolean NOT NULL,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
-- Added with the workplace extension (where people sit) and the enterprise manager; idempotent for existing tables.
-- manager_id is the manager's user id as the identity provider sent it (text: it may name someone not provisioned).
ALTER TABLE workspace.members ADD COLUMN IF NOT EXISTS manager_id text;
ALTER TABLE workspace.members ADD COLUMN IF NOT EXISTS site text;
ALTER TABLE workspace.members ADD COLUMN IF NOT EXISTS building text;
ALTER TABLE workspace.members ADD COLUMN IF NOT EXISTS floor text;
ALTER TABLE workspace.members ADD COLUMN IF NOT EXISTS team text;
CREATE INDEX IF NOT EXISTS members_tenant_user_name ON workspace.members (tenant_id, lower(user_name));

-- Teams, from the group lifecycle events (topic group-lifecycle.v1). `version` is the last groupversion applied.
CREATE TABLE IF NOT EXISTS workspace.teams (
    tenant_id     uuid NOT NULL,
    group_id      uuid NOT NULL,
    display_name  text NOT NULL,
    external_id   text,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, group_id)
);

-- No foreign key to members: the user and group topics are not ordered relative to each other, so a team may
-- name a user the directory hasn't seen yet.
CREATE TABLE IF NOT EXISTS workspace.team_members (
    tenant_id  uuid NOT NULL,
    group_id   uuid NOT NULL,
    user_id    uuid NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id)
);
CREATE INDEX IF NOT EXISTS team_members_user ON workspace.team_members (tenant_id, user_id);

-- The groups' version gate (last groupversion applied); outlives a deleted team, like workspace.versions.
CREATE TABLE IF NOT EXISTS workspace.group_versions (
    tenant_id  uuid NOT NULL,
    group_id   uuid NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (tenant_id, group_id)
);

-- Group events that arrived past a gap in their group's versions (the version before them is missing: dead-lettered,
-- or not published yet). They wait here, record as received, and the group's team stays as it was (held) until the
-- missing version arrives; then they are applied in version order (consumers/runtime/gaps.py). Empty when healthy.
CREATE TABLE IF NOT EXISTS workspace.held_group_events (
    tenant_id       uuid NOT NULL,
    group_id        uuid NOT NULL,
    version         bigint NOT NULL,
    value           bytea NOT NULL,
    repair          boolean NOT NULL DEFAULT false,
    repair_through  bigint,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    held_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, group_id, version)
);

-- Set while `scimsync rebuild workspace` has cleared the projection and not finished (it dies, say, before committing its
-- offsets). The consumer of that group waits while its row exists; run the rebuild again (consumers/rebuild.py).
CREATE TABLE IF NOT EXISTS workspace.rebuild_pending (
    group_id    text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now()
);
