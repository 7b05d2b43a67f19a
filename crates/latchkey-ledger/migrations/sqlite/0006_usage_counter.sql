-- Per-user, per-profile quota usage kept as a counter (issue 9), so the
-- quota check on insert reads one row instead of summing every live upload
-- of the user (6.8 ms at ~35k rows, inside the group-commit writer, where it
-- held up every other write of the batch).
--
-- Triggers on `uploads` keep the counter exact in the same transaction as
-- every write to the table, whatever code path makes it (insert,
-- transition, a purge that deletes rows, anything added later). Being part
-- of the statement that fired them, they are undone with it: an INSERT that
-- fails changes nothing, as the group-commit writer's `write_one` assumes.
--
-- The `uploads_usage_covering` index (0005) is no longer what the quota
-- reads, but it stays: `list` filters a user's uploads by profile and
-- status too.

-- Which statuses count against a quota: the one list the triggers and the
-- backfill read. Must match `QUOTA_STATUSES` in src/lib.rs
-- (tests/ledger/usage.rs fails if they drift).
CREATE TABLE quota_statuses (
    status TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;
INSERT INTO quota_statuses (status) VALUES ('pending'), ('processing'), ('committed');

-- Sum of `size` and number of the user's rows in `quota_statuses` in the
-- profile. A pair with no row uses nothing; a row that drops back to zero
-- is kept (it will likely be used again).
CREATE TABLE usage (
    user_id TEXT   NOT NULL,
    profile TEXT   NOT NULL,
    bytes   BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, profile)
) WITHOUT ROWID;

INSERT INTO usage (user_id, profile, bytes, count)
SELECT user_id, profile, SUM(size), COUNT(*) FROM uploads
WHERE status IN (SELECT status FROM quota_statuses)
GROUP BY user_id, profile;

CREATE TRIGGER usage_after_insert AFTER INSERT ON uploads
WHEN NEW.status IN (SELECT status FROM quota_statuses)
BEGIN
    INSERT INTO usage (user_id, profile, bytes, count)
    VALUES (NEW.user_id, NEW.profile, NEW.size, 1)
    ON CONFLICT (user_id, profile)
    DO UPDATE SET bytes = bytes + excluded.bytes, count = count + 1;
END;

CREATE TRIGGER usage_after_delete AFTER DELETE ON uploads
WHEN OLD.status IN (SELECT status FROM quota_statuses)
BEGIN
    UPDATE usage SET bytes = bytes - OLD.size, count = count - 1
    WHERE user_id = OLD.user_id AND profile = OLD.profile;
END;

-- Fires only when the row's contribution changes: it starts or stops
-- counting, or it counts and moves to another user, profile or size. The
-- common transitions between counted statuses (pending → processing →
-- committed) touch no counter. The old contribution comes off before the
-- new one goes on.
CREATE TRIGGER usage_after_update AFTER UPDATE OF status, size, user_id, profile ON uploads
WHEN (OLD.status IN (SELECT status FROM quota_statuses))
         IS NOT (NEW.status IN (SELECT status FROM quota_statuses))
     OR (NEW.status IN (SELECT status FROM quota_statuses)
         AND (OLD.user_id IS NOT NEW.user_id
              OR OLD.profile IS NOT NEW.profile
              OR OLD.size IS NOT NEW.size))
BEGIN
    UPDATE usage SET bytes = bytes - OLD.size, count = count - 1
    WHERE user_id = OLD.user_id AND profile = OLD.profile
      AND OLD.status IN (SELECT status FROM quota_statuses);
    INSERT INTO usage (user_id, profile, bytes, count)
    SELECT NEW.user_id, NEW.profile, NEW.size, 1
    WHERE NEW.status IN (SELECT status FROM quota_statuses)
    ON CONFLICT (user_id, profile)
    DO UPDATE SET bytes = bytes + excluded.bytes, count = count + 1;
END;
