-- The deprovisioning brake (service/domain/brake.py): per tenant, its policy (NULL = the defaults) and when its
-- holds were last released, so a release re-arms the brake with a fresh count instead of holding the next
-- deactivation again at once.
ALTER TABLE tenants
    ADD COLUMN brake_enabled     boolean NOT NULL DEFAULT true,
    ADD COLUMN brake_minimum     integer,
    ADD COLUMN brake_percent     integer,
    ADD COLUMN brake_window_s    integer,
    ADD COLUMN brake_released_at timestamptz;

-- The window's count: a tenant's deprovisionings by time, a small slice of the log.
CREATE INDEX events_deprovisioning ON events (tenant_id, occurred_at)
    WHERE type IN ('user.deactivated', 'user.deleted');
