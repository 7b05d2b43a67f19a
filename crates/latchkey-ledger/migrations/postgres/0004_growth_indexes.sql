-- Indexes the ledger growth benchmark (docs/BENCHMARKS.md, "Ledger growth";
-- `cargo bench -p latchkey-ledger --bench growth`) showed missing; the same
-- as migrations/sqlite/0005.

-- The outbox claim and `outbox_pending` want the oldest events that are
-- neither delivered nor dead (`ORDER BY id LIMIT n`). Through
-- outbox_undelivered (next_attempt_at) PostgreSQL fetched and sorted every
-- undelivered event, dead letters included, whose number only grows. This
-- index holds exactly the live queue in claim order, so a claim stops after
-- n entries.
CREATE INDEX outbox_due ON outbox (id) WHERE delivered_at IS NULL AND dead_at IS NULL;

-- The quota check sums `size` over a user's live rows in one profile. With
-- `size` included it can be an index-only scan (on pages the visibility map
-- marks all-visible) rather than one heap fetch per upload. Still one index
-- entry per live upload: see BENCHMARKS.md.
CREATE INDEX uploads_usage_covering ON uploads (user_id, profile, status) INCLUDE (size);
DROP INDEX uploads_usage;
