-- The photo pipeline (DESIGN §7): what it recorded about a processed image,
-- and its job queue — rows in `processing` are jobs, claimed under a lease
-- so a broker that dies mid-job leaves the job to be claimed again.
ALTER TABLE uploads ADD COLUMN width BIGINT;
ALTER TABLE uploads ADD COLUMN height BIGINT;
ALTER TABLE uploads ADD COLUMN thumbhash TEXT;
ALTER TABLE uploads ADD COLUMN variants TEXT;
ALTER TABLE uploads ADD COLUMN process_lease_until BIGINT;
ALTER TABLE uploads ADD COLUMN process_attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX uploads_processing ON uploads (status, process_lease_until) WHERE status = 'processing';
