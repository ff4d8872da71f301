-- Per-tenant rate limits (`scimsync tenants rate-limit`): NULL means the process default
-- (SCIMSYNC_RATE_LIMIT_PER_SECOND / SCIMSYNC_RATE_LIMIT_BURST); 0 requests per second switches the limit off.
ALTER TABLE tenants
    ADD COLUMN rate_limit_per_second double precision CHECK (rate_limit_per_second >= 0),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst >= 1);
