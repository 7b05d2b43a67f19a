-- Per-user, per-profile quota usage kept as a counter (issue 9), so the
-- quota check on insert reads one row instead of summing every live upload
-- of the user; the same as migrations/sqlite/0006.
--
-- Triggers on `uploads` keep the counter exact in the same transaction as
-- every write to the table, whatever code path makes it (insert,
-- transition, a purge that deletes rows, anything added later).
--
-- The `uploads_usage_covering` index (0004) is no longer what the quota
-- reads, but it stays: `list` filters a user's uploads by profile and
-- status too.

-- Other instances may still be writing (a rolling deploy runs the old
-- version beside this migration). Rows they wrote after the backfill read
-- the table but before the triggers exist would never be counted, so the
-- table is locked against writes first; they wait until this migration
-- commits, and then fire the triggers. Reads go on.
LOCK TABLE uploads IN SHARE ROW EXCLUSIVE MODE;

-- Which statuses count against a quota: the one list the triggers and the
-- backfill use. Must match `QUOTA_STATUSES` in src/lib.rs
-- (tests/ledger/usage.rs fails if they drift).
CREATE FUNCTION counts_toward_quota(status TEXT) RETURNS BOOLEAN
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT status IN ('pending', 'processing', 'committed') $$;

-- Sum of `size` and number of the user's rows that count in the profile.
-- A pair with no row uses nothing; a row that drops back to zero is kept
-- (it will likely be used again).
CREATE TABLE usage (
    user_id TEXT   NOT NULL,
    profile TEXT   NOT NULL,
    bytes   BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, profile)
);

INSERT INTO usage (user_id, profile, bytes, count)
SELECT user_id, profile, SUM(size), COUNT(*) FROM uploads
WHERE counts_toward_quota(status)
GROUP BY user_id, profile;

-- The old row's contribution comes off if it counted, the new one's goes on
-- if it counts. Each is a single UPDATE / upsert of the counter row, which
-- re-reads the latest committed counter after waiting for its row lock, so
-- concurrent writers under READ COMMITTED never lose an update.
CREATE FUNCTION uploads_usage_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF counts_toward_quota(OLD.status) THEN
            UPDATE usage SET bytes = usage.bytes - OLD.size, count = usage.count - 1
            WHERE usage.user_id = OLD.user_id AND usage.profile = OLD.profile;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF counts_toward_quota(NEW.status) THEN
            INSERT INTO usage (user_id, profile, bytes, count)
            VALUES (NEW.user_id, NEW.profile, NEW.size, 1)
            ON CONFLICT (user_id, profile)
            DO UPDATE SET bytes = usage.bytes + EXCLUDED.bytes, count = usage.count + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_after_insert AFTER INSERT ON uploads
    FOR EACH ROW WHEN (counts_toward_quota(NEW.status))
    EXECUTE FUNCTION uploads_usage_changed();

CREATE TRIGGER usage_after_delete AFTER DELETE ON uploads
    FOR EACH ROW WHEN (counts_toward_quota(OLD.status))
    EXECUTE FUNCTION uploads_usage_changed();

-- Fires only when the row's contribution changes: it starts or stops
-- counting, or it counts and moves to another user, profile or size. The
-- common transitions between counted statuses (pending → processing →
-- committed) touch no counter row, so they take no lock on it.
CREATE TRIGGER usage_after_update AFTER UPDATE OF status, size, user_id, profile ON uploads
    FOR EACH ROW WHEN (
        counts_toward_quota(OLD.status) IS DISTINCT FROM counts_toward_quota(NEW.status)
        OR (counts_toward_quota(NEW.status)
            AND (OLD.user_id, OLD.profile, OLD.size)
                IS DISTINCT FROM (NEW.user_id, NEW.profile, NEW.size)))
    EXECUTE FUNCTION uploads_usage_changed();
