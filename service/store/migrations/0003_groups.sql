-- Groups (Okta Push Groups, Entra group provisioning). `resource` is the canonical SCIM representation
-- WITHOUT members: membership lives only in group_members, one row per member, so adding or removing one
-- member of a 10,000-member group touches one row, never a rewrite of a list.
CREATE TABLE groups (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    display_name text NOT NULL,
    external_id  text,
    version      bigint NOT NULL,
    resource     jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- displayName is unique per tenant regardless of case; the constraint decides races.
CREATE UNIQUE INDEX groups_tenant_display_name ON groups (tenant_id, lower(display_name));
CREATE INDEX groups_tenant_external_id ON groups (tenant_id, external_id);
CREATE INDEX groups_tenant_seq ON groups (tenant_id, seq);

-- Members are users of the same tenant (the foreign key makes a foreign or unknown id impossible);
-- deleting a group or a user removes its rows. The store writes the events for those removals.
CREATE TABLE group_members (
    tenant_id uuid NOT NULL,
    group_id  uuid NOT NULL,
    user_id   uuid NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
-- "Which groups is this user in" (user deletion, `members[value eq ...]` filters).
CREATE INDEX group_members_tenant_user ON group_members (tenant_id, user_id);
