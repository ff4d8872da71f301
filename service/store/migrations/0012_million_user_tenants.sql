-- A million users in one tenant: exact totals and any import page without reading the whole tenant, and
-- indexes for the incremental-sync and email lookups.
--
-- user_blocks counts a tenant's users per block of 1,024 consecutive `seq` values, maintained in the writing
-- transaction by statement triggers, so a reader's snapshot sees counts that match its users exactly. The sum is
-- totalResults; the running sum over blocks finds the block where page K starts, and the page is read from the
-- (tenant_id, seq) index with an offset below ~1,024 within that block. Concurrent creates of one tenant have
-- neighbouring seqs (one block): each backend adds to its own slot (pid % 8) so they rarely wait on one row.
-- A row may go negative (a delete counted in another slot than the create); only the sums mean anything.
CREATE TABLE user_blocks (
    tenant_id uuid NOT NULL,
    block     bigint NOT NULL,
    slot      smallint NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (tenant_id, block, slot)
);

CREATE OR REPLACE FUNCTION user_blocks_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_blocks (tenant_id, block, slot, n)
    SELECT tenant_id, seq >> 10, pg_backend_pid() % 8, count(*) FROM added GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tenant_id, block, slot) DO UPDATE SET n = user_blocks.n + excluded.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION user_blocks_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A tenant's deletion cascades to its users: its counts go with it, nothing to decrement.
    DELETE FROM user_blocks b USING (SELECT DISTINCT tenant_id FROM removed) r
    WHERE b.tenant_id = r.tenant_id AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = r.tenant_id);
    INSERT INTO user_blocks (tenant_id, block, slot, n)
    SELECT tenant_id, seq >> 10, pg_backend_pid() % 8, -count(*) FROM removed
    WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = removed.tenant_id)
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tenant_id, block, slot) DO UPDATE SET n = user_blocks.n + excluded.n;
    RETURN NULL;
END $$;

-- CREATE TRIGGER locks users against writes until this migration commits, so the backfill below counts exactly
-- the rows that exist then, and the triggers count every row after.
CREATE TRIGGER user_blocks_added AFTER INSERT ON users
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION user_blocks_added();
CREATE TRIGGER user_blocks_removed AFTER DELETE ON users
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION user_blocks_removed();

INSERT INTO user_blocks (tenant_id, block, slot, n)
SELECT tenant_id, seq >> 10, 0, count(*) FROM users GROUP BY 1, 2;

-- The two indexes below are built inside the migration's transaction, which blocks writes to users while they
-- build (seconds per million users). On a big production table build them first, outside any transaction, with
-- the same definitions: `CREATE INDEX CONCURRENTLY IF NOT EXISTS …` (after creating scim_emails); this migration
-- then skips them (IF NOT EXISTS). README "Migrations on big tables" has the statements.

-- Incremental sync (`meta.lastModified gt "…"`); seq included so that a filtered page (paging.py) collects the
-- matches' seqs from the index alone.
CREATE INDEX IF NOT EXISTS users_tenant_updated_at ON users (tenant_id, updated_at) INCLUDE (seq);

-- `emails.value eq "…"`: the lower-cased values of a user's emails, as the filter compiler (filter_sql.py) emits
-- them (`scim_emails(resource) @> ARRAY[lower($n)]`). fastupdate off: a lookup never scans a pending list.
CREATE OR REPLACE FUNCTION scim_emails(resource jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(lower(e ->> 'value')), '{}')
    FROM jsonb_array_elements(CASE jsonb_typeof(resource -> 'emails') WHEN 'array' THEN resource -> 'emails'
                                   ELSE '[]'::jsonb END) AS e
$$;
CREATE INDEX IF NOT EXISTS users_emails ON users USING gin (scim_emails(resource)) WITH (fastupdate = off);
