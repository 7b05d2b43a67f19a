//! [`ObjectStore`] over any S3 API with the official aws-sdk-s3 client: the
//! embedded store, Garage, AWS, MinIO, R2, Ceph.

use async_trait::async_trait;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, Delete, ObjectIdentifier};
use latchkey_domain::{ObjectKey, Secret, Sha256Digest};
use time::OffsetDateTime;

use crate::{
    ByteBody, Capabilities, DELETE_BATCH, ListPage, ListedObject, ObjectMeta, ObjectStore,
    OpenMultipart, Part, StoreError,
};

/// How to reach the store as the broker.
#[derive(Clone, Debug)]
pub struct S3StoreConfig {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub capabilities: Capabilities,
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    capabilities: Capabilities,
    /// Where `credentials`-mode grants come from, when the store has a source.
    issuer: Option<crate::temporary::CredentialIssuer>,
    /// The bound on one store call (see [`S3Store::with_timeout`]).
    timeout: std::time::Duration,
    /// Where streamed bodies go instead of over HTTP, when the store is in
    /// the broker's own process (see [`S3Store::with_body_writer`]).
    bodies: Option<std::sync::Arc<dyn crate::BodyWriter>>,
}

impl S3Store {
    pub fn new(cfg: &S3StoreConfig) -> Self {
        let creds = Credentials::new(
            cfg.access_key_id.clone(),
            cfg.secret_access_key.expose().to_owned(),
            None,
            None,
            "latchkey-config",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .endpoint_url(cfg.endpoint.clone())
            .force_path_style(cfg.path_style)
            .credentials_provider(creds)
            .timeout_config(timeouts(DEFAULT_TIMEOUT))
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: cfg.bucket.clone(),
            capabilities: cfg.capabilities.clone(),
            issuer: None,
            timeout: DEFAULT_TIMEOUT,
            bodies: None,
        }
    }

    /// Enables [`ObjectStore::temporary_credentials`].
    pub fn with_temporary_credentials(
        mut self,
        issuer: crate::temporary::CredentialIssuer,
    ) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// Sends [`ObjectStore::put_stream`] and [`ObjectStore::upload_part`]
    /// to `bodies` instead of the S3 client: the embedded store, in the same
    /// process, takes them without the loopback HTTP hop. Every other call
    /// still goes over S3.
    pub fn with_body_writer(mut self, bodies: std::sync::Arc<dyn crate::BodyWriter>) -> Self {
        self.bodies = Some(bodies);
        self
    }

    /// Bounds every store call (connect, each attempt, and the whole
    /// operation with its retries) to `timeout`: a store that accepts
    /// connections and never answers yields [`StoreError::Unavailable`].
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        let conf = self
            .client
            .config()
            .to_builder()
            .timeout_config(timeouts(timeout))
            .build();
        self.client = aws_sdk_s3::Client::from_conf(conf);
        self.timeout = timeout;
        self
    }

    /// Calls whose duration is the client's (streamed bodies) or the
    /// object's size (copies) keep the connect timeout; a streamed body is
    /// bounded by the broker's idle-read timeout instead, a copy by a
    /// generous multiple of the timeout.
    pub(crate) fn long_call(
        &self,
        whole: Option<std::time::Duration>,
    ) -> aws_sdk_s3::config::Builder {
        let t = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.timeout)
            .disable_operation_attempt_timeout();
        let t = match whole {
            Some(w) => t.operation_timeout(w),
            None => t.disable_operation_timeout(),
        };
        aws_sdk_s3::config::Builder::default().timeout_config(t.build())
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub(crate) fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// What [`S3Store::new`] bounds a store call to (`[store] timeout`).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn timeouts(t: std::time::Duration) -> aws_sdk_s3::config::timeout::TimeoutConfig {
    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(t)
        .operation_attempt_timeout(t)
        .operation_timeout(t)
        .build()
}

/// Sorts SDK failures into "retry later" and "refused". The message keeps
/// the S3 error code but never the request (which could carry a signature).
pub(crate) fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("unknown").to_owned();
            if se.raw().status().is_server_error() {
                StoreError::Unavailable(code)
            } else {
                StoreError::Refused(code)
            }
        }
        SdkError::TimeoutError(_) => StoreError::Unavailable("timeout".into()),
        SdkError::DispatchFailure(_) => StoreError::Unavailable("connection failed".into()),
        SdkError::ResponseError(_) => StoreError::Unavailable("malformed response".into()),
        _ => StoreError::Refused("request could not be built".into()),
    }
}

/// A `DeleteObjects` answer that names keys it did not delete: a 200 whose
/// body carries per-key S3 error codes. Codes S3 documents as transient
/// mean "retry later", like a 5xx; anything else (`AccessDenied`, ...) is a
/// refusal.
fn key_errors(code: Option<&str>, count: usize) -> StoreError {
    let code = code.unwrap_or("unknown");
    let msg = format!("DeleteObjects left {count} key(s): {code}");
    match code {
        "InternalError" | "ServiceUnavailable" | "SlowDown" => StoreError::Unavailable(msg),
        _ => StoreError::Refused(msg),
    }
}

/// `x-amz-copy-source` is a URL path: every byte but unreserved ones and '/'
/// is percent-encoded.
fn uri_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl ObjectStore for S3Store {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn temporary_credentials(
        &self,
        req: &crate::temporary::CredentialRequest<'_>,
    ) -> Result<crate::temporary::TemporaryCredentials, StoreError> {
        match &self.issuer {
            Some(issuer) => issuer.issue(req).await,
            None => Err(StoreError::Refused(
                "this store has no source of temporary credentials".into(),
            )),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let res = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                return Ok(None);
            }
            Err(e) => return Err(classify(e)),
        };
        Ok(Some(ObjectMeta {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            content_type: out.content_type().map(str::to_owned),
            etag: out.e_tag().map(|t| t.trim_matches('"').to_owned()),
            sha256: out
                .checksum_sha256()
                .and_then(|c| Sha256Digest::parse(c).ok()),
            last_modified: out
                .last_modified()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        }))
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError> {
        let source = format!("{}/{}", self.bucket, uri_encode_key(from.as_str()));
        let res = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to.as_str())
            .copy_source(source)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .customize()
            .config_override(self.long_call(Some(self.timeout * 60)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        let unbuildable = |_| StoreError::Refused("request could not be built".into());
        for chunk in keys.chunks(DELETE_BATCH) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k.as_str()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(unbuildable)?;
            // Quiet: the answer lists only the keys that were not deleted.
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(unbuildable)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(classify)?;
            if let Some(first) = out.errors().first() {
                return Err(key_errors(first.code(), out.errors().len()));
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max: u32,
    ) -> Result<ListPage, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(continuation.map(str::to_owned))
            .max_keys(max.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(classify)?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: o
                        .last_modified()
                        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
                })
            })
            .collect();
        let next = out
            .is_truncated()
            .unwrap_or(false)
            .then(|| out.next_continuation_token().map(str::to_owned))
            .flatten();
        Ok(ListPage { objects, next })
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max: u32,
    ) -> Result<Vec<OpenMultipart>, StoreError> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_uploads(max.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .uploads()
            .iter()
            .filter_map(|u| {
                Some(OpenMultipart {
                    key: u.key()?.to_owned(),
                    upload_id: u.upload_id()?.to_owned(),
                    initiated: u
                        .initiated()
                        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
                })
            })
            .collect())
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError> {
        self.create_multipart_impl(key, content_type).await
    }

    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        self.list_parts_impl(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<Option<String>, StoreError> {
        self.complete_multipart_impl(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        self.abort_multipart_impl(key, upload_id).await
    }

    async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError> {
        match &self.bodies {
            Some(bodies) => {
                bodies
                    .put_stream(key, content_type, length, sha256, body)
                    .await
            }
            None => {
                self.put_stream_impl(key, content_type, length, sha256, body)
                    .await
            }
        }
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError> {
        match &self.bodies {
            Some(bodies) => {
                bodies
                    .upload_part(key, upload_id, number, length, body)
                    .await
            }
            None => {
                self.upload_part_impl(key, upload_id, number, length, body)
                    .await
            }
        }
    }

    async fn sha256(&self, key: &ObjectKey) -> Result<Option<Sha256Digest>, StoreError> {
        self.sha256_impl(key).await
    }

    async fn read(&self, key: &ObjectKey, max: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_impl(key, max).await
    }

    async fn put_bytes(
        &self,
        key: &ObjectKey,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<String>, StoreError> {
        self.put_bytes_impl(key, content_type, bytes).await
    }
}
