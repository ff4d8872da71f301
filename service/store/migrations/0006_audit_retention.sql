-- The audit log is pruned to its retention (SCIMSYNC_AUDIT_RETENTION_DAYS) by age: find the old rows without
-- reading the whole table.
CREATE INDEX IF NOT EXISTS scim_requests_at ON scim_requests (at);
