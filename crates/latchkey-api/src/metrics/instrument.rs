//! The ledger and the store, timed. Wrapping the traits (rather than timing
//! each call site in the broker) covers every caller — routes, broker and,
//! later, the background workers — and keeps the broker free of metrics.
//!
//! Commits are counted here too: a `pending → committed` transition that
//! returns a row is exactly one commit, however many `complete` calls raced.
//!
//! When `UploadRepo` or `ObjectStore` gain a method, add a delegating one
//! below; a method with a default body would otherwise bypass the inner
//! implementation silently.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId};
use latchkey_ledger::{Changes, Inserted, LedgerError, ListFilter, OutboxEvent, Quota, UploadRepo};
use latchkey_store::{ByteBody, Capabilities, ObjectMeta, ObjectStore, Part, StoreError};
use metrics::{counter, histogram};
use time::OffsetDateTime;

use super::{COMMITS, LEDGER_DURATION, Metrics, STORE_DURATION, UPLOAD_BYTES};

impl Metrics {
    /// The ledger with every call timed into this registry.
    pub fn ledger(&self, inner: Arc<dyn UploadRepo>) -> Arc<dyn UploadRepo> {
        Arc::new(TimedLedger {
            inner,
            metrics: self.clone(),
        })
    }

    /// The store with every call timed into this registry.
    pub fn store(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(TimedStore {
            inner,
            metrics: self.clone(),
        })
    }

    async fn timed<T>(
        &self,
        name: &'static str,
        op: &'static str,
        fut: impl Future<Output = T>,
    ) -> T {
        let start = Instant::now();
        let out = fut.await;
        let secs = start.elapsed().as_secs_f64();
        self.record(|| histogram!(name, "op" => op).record(secs));
        out
    }
}

struct TimedLedger {
    inner: Arc<dyn UploadRepo>,
    metrics: Metrics,
}

impl TimedLedger {
    async fn timed<T>(&self, op: &'static str, fut: impl Future<Output = T>) -> T {
        self.metrics.timed(LEDGER_DURATION, op, fut).await
    }
}

#[async_trait]
impl UploadRepo for TimedLedger {
    async fn insert(
        &self,
        upload: &Upload,
        quota: Option<&Quota>,
    ) -> Result<Inserted, LedgerError> {
        self.timed("insert", self.inner.insert(upload, quota)).await
    }

    async fn get(&self, id: UploadId) -> Result<Option<Upload>, LedgerError> {
        self.timed("get", self.inner.get(id)).await
    }

    async fn list(&self, user: &UserId, filter: &ListFilter) -> Result<Vec<Upload>, LedgerError> {
        self.timed("list", self.inner.list(user, filter)).await
    }

    async fn transition(
        &self,
        id: UploadId,
        from: UploadStatus,
        to: UploadStatus,
        changes: &Changes,
        now: OffsetDateTime,
    ) -> Result<Option<Upload>, LedgerError> {
        let out = self
            .timed(
                "transition",
                self.inner.transition(id, from, to, changes, now),
            )
            .await;
        if let Ok(Some(row)) = &out
            && to == UploadStatus::Committed
        {
            let profile = row.profile.to_string();
            self.metrics.record(|| {
                counter!(COMMITS, "profile" => profile.clone()).increment(1);
                counter!(UPLOAD_BYTES, "profile" => profile).increment(row.size);
            });
        }
        out
    }

    async fn expired(
        &self,
        status: UploadStatus,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError> {
        self.timed("expired", self.inner.expired(status, before, limit))
            .await
    }

    async fn find_by_key(&self, key: &ObjectKey) -> Result<Option<Upload>, LedgerError> {
        self.timed("find_by_key", self.inner.find_by_key(key)).await
    }

    async fn usage(&self, user: &UserId, profile: &ProfileName) -> Result<(u64, u64), LedgerError> {
        self.timed("usage", self.inner.usage(user, profile)).await
    }

    async fn set_attached(
        &self,
        id: UploadId,
        attached_ref: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Upload>, LedgerError> {
        self.timed(
            "set_attached",
            self.inner.set_attached(id, attached_ref, now),
        )
        .await
    }

    async fn committed_unattached(
        &self,
        profile: &ProfileName,
        committed_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError> {
        self.timed(
            "committed_unattached",
            self.inner
                .committed_unattached(profile, committed_before, limit),
        )
        .await
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError> {
        self.timed("outbox_pending", self.inner.outbox_pending(limit))
            .await
    }

    async fn outbox_claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, LedgerError> {
        self.timed("outbox_claim", self.inner.outbox_claim(now, lease, limit))
            .await
    }

    async fn outbox_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), LedgerError> {
        self.timed("outbox_delivered", self.inner.outbox_delivered(id, now))
            .await
    }

    async fn outbox_failed(
        &self,
        id: i64,
        next_attempt_at: Option<OffsetDateTime>,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        self.timed(
            "outbox_failed",
            self.inner.outbox_failed(id, next_attempt_at, error, now),
        )
        .await
    }

    async fn outbox_dead(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError> {
        self.timed("outbox_dead", self.inner.outbox_dead(limit))
            .await
    }

    async fn claim_processing(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<latchkey_ledger::ProcessingJob>, LedgerError> {
        self.timed(
            "claim_processing",
            self.inner.claim_processing(now, lease, limit),
        )
        .await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        self.timed("try_lease", self.inner.try_lease(name, holder, now, ttl))
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, LedgerError> {
        self.timed("release_lease", self.inner.release_lease(name, holder))
            .await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

struct TimedStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Metrics,
}

#[async_trait]
impl ObjectStore for TimedStore {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.metrics
            .timed(STORE_DURATION, "head", self.inner.head(key))
            .await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError> {
        self.metrics
            .timed(STORE_DURATION, "copy", self.inner.copy(from, to))
            .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.metrics
            .timed(STORE_DURATION, "delete", self.inner.delete(key))
            .await
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        self.metrics
            .timed(STORE_DURATION, "delete_many", self.inner.delete_many(keys))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.metrics
            .timed(STORE_DURATION, "ping", self.inner.ping())
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max: u32,
    ) -> Result<latchkey_store::ListPage, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "list",
                self.inner.list(prefix, continuation, max),
            )
            .await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max: u32,
    ) -> Result<Vec<latchkey_store::OpenMultipart>, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "list_multipart_uploads",
                self.inner.list_multipart_uploads(prefix, max),
            )
            .await
    }

    async fn temporary_credentials(
        &self,
        req: &latchkey_store::temporary::CredentialRequest<'_>,
    ) -> Result<latchkey_store::temporary::TemporaryCredentials, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "temporary_credentials",
                self.inner.temporary_credentials(req),
            )
            .await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "create_multipart",
                self.inner.create_multipart(key, content_type),
            )
            .await
    }

    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "list_parts",
                self.inner.list_parts(key, upload_id),
            )
            .await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<Option<String>, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "complete_multipart",
                self.inner.complete_multipart(key, upload_id, parts),
            )
            .await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "abort_multipart",
                self.inner.abort_multipart(key, upload_id),
            )
            .await
    }

    async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<latchkey_domain::Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "put_stream",
                self.inner
                    .put_stream(key, content_type, length, sha256, body),
            )
            .await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "upload_part",
                self.inner.upload_part(key, upload_id, number, length, body),
            )
            .await
    }

    async fn read(&self, key: &ObjectKey, max: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.metrics
            .timed(STORE_DURATION, "read", self.inner.read(key, max))
            .await
    }

    async fn put_bytes(
        &self,
        key: &ObjectKey,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<String>, StoreError> {
        self.metrics
            .timed(
                STORE_DURATION,
                "put_bytes",
                self.inner.put_bytes(key, content_type, bytes),
            )
            .await
    }

    async fn sha256(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<latchkey_domain::Sha256Digest>, StoreError> {
        self.metrics
            .timed(STORE_DURATION, "sha256", self.inner.sha256(key))
            .await
    }
}
