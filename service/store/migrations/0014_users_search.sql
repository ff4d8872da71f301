-- The admin console's Users search: any part of a userName or of an email ("smith" finds john.smith@acme.com),
-- case-insensitive, served by trigram indexes (pg_trgm, in PostgreSQL's contrib: Debian's postgresql package and
-- the official images ship it; it is a trusted extension, so the database's owner may create it). Without them a
-- search read every user of the tenant: ~4 s a page at a million users (bench.admin_search).
--
-- The indexes are built inside the migration's transaction, which blocks writes to users while they build
-- (23 s for both at a million users on the 2-core development machine). On a big production table build them
-- first, outside any transaction, with the same definitions (`CREATE INDEX CONCURRENTLY IF NOT EXISTS …`, after
-- the extension and the function); this migration then skips them (IF NOT EXISTS).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- A user's email values, lower-cased, one per line: what the search matches emails against (the query keeps an
-- exact per-email test too, so a search can't match across two emails).
CREATE OR REPLACE FUNCTION scim_emails_text(resource jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(lower(e ->> 'value'), E'\n'), '')
    FROM jsonb_array_elements(CASE jsonb_typeof(resource -> 'emails') WHEN 'array' THEN resource -> 'emails'
                                   ELSE '[]'::jsonb END) AS e
$$;

CREATE INDEX IF NOT EXISTS users_user_name_trgm ON users USING gin (lower(user_name) gin_trgm_ops);
CREATE INDEX IF NOT EXISTS users_emails_trgm ON users USING gin (scim_emails_text(resource) gin_trgm_ops);
