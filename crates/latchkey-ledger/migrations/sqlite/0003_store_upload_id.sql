-- The store's multipart upload id, for uploads whose bytes arrive in parts
-- (`multipart` and `tus` modes): the broker creates the multipart upload with
-- the row, and needs its id to sign parts, list them, complete or abort.
ALTER TABLE uploads ADD COLUMN store_upload_id TEXT;
