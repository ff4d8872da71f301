-- A transaction that NOTIFYs takes a database-wide lock at commit, which serialised every SCIM write
-- (durable creates fell from ~9k/s to ~3.5k/s). Notify only when the relay is asleep: it holds the
-- exclusive "sleeping" advisory lock (7202613) only while it waits for work. Otherwise the writer takes
-- that lock in shared mode until it commits, which keeps the relay from falling asleep before it has
-- seen this event (service/relay/relay.py, _wait_for_work).
CREATE OR REPLACE FUNCTION scimsync_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock_shared(7202613) THEN
        PERFORM pg_notify('scimsync_events', '');
    END IF;
    RETURN NULL;
END
$$;
