-- The upload ledger (DESIGN §4) on PostgreSQL: the end state of
-- migrations/sqlite/0001 + 0002, column for column, so both backends share
-- one row mapping (src/rows.rs).
--
-- Types stay portable on purpose: TEXT and BIGINT, times as BIGINT unix
-- milliseconds (UTC). JSON (metadata, payload) is TEXT, not JSONB: the
-- ledger never queries inside it, TEXT gives back exactly the bytes that
-- were written (JSONB reorders keys and normalises numbers), and an operator
-- who wants to look inside can still write `payload::jsonb`.

CREATE TABLE uploads (
    -- UUIDv7 as 32 lowercase hex digits. COLLATE "C" makes text order byte
    -- order, which is creation order whatever the database's locale; the
    -- listing cursor (`id < $n`) relies on it.
    id              TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
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

-- The unattached sweep: committed rows nobody attached, oldest commit first.
CREATE INDEX uploads_unattached ON uploads (profile, committed_at)
    WHERE status = 'committed' AND attached_ref IS NULL;

-- Webhook events, written in the same transaction as the transition they
-- announce, delivered later by the webhook workers (at least once).
CREATE TABLE outbox (
    -- From a sequence, so never reused. Ids are handed out at INSERT and
    -- transactions commit in any order, so id order is only roughly commit
    -- order; delivery is at least once, not strictly ordered.
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    upload_id       TEXT    COLLATE "C" NOT NULL REFERENCES uploads (id),
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    delivered_at    BIGINT,
    -- BIGINT rather than INTEGER so the shared row type decodes an i64 on
    -- both backends.
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    -- Why the last attempt failed (clipped), for operators and dead letters.
    last_error      TEXT,
    -- While a worker holds a claimed event, no other claims it. NULL = free.
    lease_until     BIGINT,
    -- Set when delivery was given up; the event is then never claimed again.
    dead_at         BIGINT
);

CREATE INDEX outbox_undelivered ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL;

CREATE INDEX outbox_dead ON outbox (id) WHERE dead_at IS NOT NULL;

CREATE INDEX outbox_upload ON outbox (upload_id);

-- One row per named background job currently held by some instance.
CREATE TABLE leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
