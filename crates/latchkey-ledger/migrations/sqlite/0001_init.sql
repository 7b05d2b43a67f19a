-- The upload ledger (DESIGN §4) and its webhook outbox.
--
-- Kept portable on purpose so migrations/postgres/ can mirror it column for
-- column: TEXT and BIGINT only, times as BIGINT unix milliseconds (UTC),
-- JSON as TEXT, no rowid tricks in the uploads table.

CREATE TABLE uploads (
    -- UUIDv7 as 32 lowercase hex digits: text order is creation order,
    -- which is what listing and cursors rely on.
    id              TEXT    NOT NULL PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    profile         TEXT    NOT NULL,
    mode            TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    filename        TEXT    NOT NULL,
    content_type    TEXT    NOT NULL,
    size            BIGINT  NOT NULL CHECK (size >= 0),
    -- Lowercase hex, or NULL when the client declared no checksum.
    sha256          TEXT,
    status          TEXT    NOT NULL CHECK (status IN
                        ('pending', 'processing', 'committed', 'rejected',
                         'expired', 'aborted', 'deleted')),
    etag            TEXT,
    reason          TEXT,
    -- A JSON object of string to string.
    metadata        TEXT    NOT NULL DEFAULT '{}',
    idempotency_key TEXT,
    attached_ref    TEXT,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    committed_at    BIGINT
);

-- One row per object: the store's notifications and the reconciler find
-- uploads by key.
CREATE UNIQUE INDEX uploads_key ON uploads (key);

-- A repeated Idempotency-Key from the same user finds the first upload.
CREATE UNIQUE INDEX uploads_idempotency ON uploads (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Listing a user's uploads newest first, paged by id.
CREATE INDEX uploads_user_listing ON uploads (user_id, id DESC);

-- Quota checks sum a user's live uploads in one profile.
CREATE INDEX uploads_usage ON uploads (user_id, profile, status);

-- The reconciler sweeps rows in one status past their expiry.
CREATE INDEX uploads_sweep ON uploads (status, expires_at);

-- Webhook events, written in the same transaction as the transition they
-- announce, delivered later by the webhook worker (at least once).
CREATE TABLE outbox (
    -- AUTOINCREMENT so ids are never reused: delivery order is id order.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id       TEXT    NOT NULL REFERENCES uploads (id),
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    delivered_at    BIGINT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL
);

CREATE INDEX outbox_undelivered ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL;

CREATE INDEX outbox_upload ON outbox (upload_id);
