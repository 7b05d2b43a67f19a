//! The embedded store's in-process writes, as the S3 client's
//! [`BodyWriter`]: `proxy` bodies and `tus` parts skip the loopback HTTP
//! hop (see `latchkey_s3local::InProcess` for why), and fail exactly as they
//! would through the client.

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, Sha256Digest};
use latchkey_s3local::{InProcess, WriteError};
use latchkey_store::{BodyWriter, ByteBody, StoreError};

pub(crate) struct EmbeddedWrites(pub(crate) InProcess);

#[async_trait]
impl BodyWriter for EmbeddedWrites {
    async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError> {
        self.0
            .put_object(
                key.as_str(),
                content_type,
                length,
                sha256.map(|d| d.to_base64()),
                body,
            )
            .await
            .map(Some)
            .map_err(store_error)
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError> {
        self.0
            .upload_part(key.as_str(), upload_id, number, length, body)
            .await
            .map_err(store_error)
    }
}

/// What the S3 client makes of the same failure (`latchkey_store`'s
/// `classify` and `body_failed`).
fn store_error(err: WriteError) -> StoreError {
    match err {
        WriteError::BodyFailed => StoreError::body_failed(),
        WriteError::S3 {
            code,
            server_error: true,
        } => StoreError::Unavailable(code),
        WriteError::S3 {
            code,
            server_error: false,
        } => StoreError::Refused(code),
    }
}
