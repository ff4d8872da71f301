-- Wake the relay when events are committed. The notification is only a wake-up (empty payload): the relay
-- reads what to publish from `events`, so a lost or coalesced notification costs at most one poll interval.
-- Statement-level, so a multi-row INSERT notifies once; Postgres also folds identical notifications of one
-- transaction into one, and delivers them only after COMMIT.
CREATE FUNCTION scimsync_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scimsync_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
AFTER INSERT ON events
FOR EACH STATEMENT EXECUTE FUNCTION scimsync_events_notify();

-- The relay claims `WHERE published_at IS NULL ORDER BY sequence` (0001's partial index events_unpublished
-- serves it, and the lag's count). The lag's age reads occurred_at of the first unpublished row, and
-- `relay status` finds the last published sequence by walking the primary key backwards: no index needed.
