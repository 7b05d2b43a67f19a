-- Outbox delivery by several broker instances at once, unattached-upload
-- sweeps, and named leases for background passes.
--
-- 0001 may already be applied on users' disks, so everything new is added
-- here; migrations/postgres/0001_init.sql has the same end state.

-- Why the last attempt failed (clipped), for operators and dead letters.
ALTER TABLE outbox ADD COLUMN last_error TEXT;
-- While a worker holds a claimed event, no other claims it. NULL = free.
ALTER TABLE outbox ADD COLUMN lease_until BIGINT;
-- Set when delivery was given up; the event is then never claimed again.
ALTER TABLE outbox ADD COLUMN dead_at BIGINT;

CREATE INDEX outbox_dead ON outbox (id) WHERE dead_at IS NOT NULL;

-- The unattached sweep: committed rows nobody attached, oldest commit first.
CREATE INDEX uploads_unattached ON uploads (profile, committed_at)
    WHERE status = 'committed' AND attached_ref IS NULL;

-- One row per named background job currently held by some instance.
CREATE TABLE leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
