-- Indexes the ledger growth benchmark (docs/BENCHMARKS.md, "Ledger growth";
-- `cargo bench -p latchkey-ledger --bench growth`) showed missing.

-- The outbox claim and `outbox_pending` want the oldest events that are
-- neither delivered nor dead (`ORDER BY id LIMIT n`). outbox_undelivered
-- (next_attempt_at) does not give id order, so SQLite walked the whole
-- table in rowid order instead (SCAN outbox), past every event ever
-- delivered: a claim cost 371 ms at 1M events. This index holds exactly the
-- live queue, in claim order, so a claim reads about n entries however long
-- the outbox's history; dead letters stay out of it.
CREATE INDEX outbox_due ON outbox (id) WHERE delivered_at IS NULL AND dead_at IS NULL;

-- The quota check sums `size` over a user's live rows in one profile. With
-- `size` in the index the sum reads only the index (COVERING INDEX), not
-- one table row per upload. It is still one index entry per live upload:
-- see BENCHMARKS.md for what that costs at 1M rows.
CREATE INDEX uploads_usage_covering ON uploads (user_id, profile, status, size);
DROP INDEX uploads_usage;
