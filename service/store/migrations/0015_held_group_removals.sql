-- Team removals of a deletion the deprovisioning brake holds (service/store/leaving.py): the member rows are
-- gone (SCIM says what the identity provider said), but no group event is written until the deletion is released;
-- then each row becomes a `group.membership_changed` at its group's next version. A group deleted meanwhile takes
-- its rows with it. No key to users: the user row is deleted in the same transaction.
CREATE TABLE held_group_removals (
    tenant_id  uuid NOT NULL,
    group_id   uuid NOT NULL,
    user_id    uuid NOT NULL,
    held_since timestamptz NOT NULL,
    traceparent text,  -- the deletion's: the removal's event, written at release, joins the request's trace
    PRIMARY KEY (tenant_id, user_id, group_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE
);
-- A group's deletion (the cascade) and reconcile's per-team look-up.
CREATE INDEX held_group_removals_group ON held_group_removals (tenant_id, group_id);
