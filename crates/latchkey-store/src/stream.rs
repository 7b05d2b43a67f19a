//! Bodies the broker streams itself (the `proxy` mode): a single PutObject or
//! one part of a multipart upload, fed chunk by chunk so memory stays bounded
//! whatever the size, and the SHA-256 of a stored object read back the same
//! way.

use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;
use futures::StreamExt;
use http_body::{Body, Frame, SizeHint};
use latchkey_domain::{ObjectKey, Sha256Digest};
use sha2::{Digest, Sha256};

use crate::s3::{S3Store, classify};
use crate::{ByteBody, StoreError};

/// A body of known length over a stream of chunks. The SDK needs
/// `Send + Sync` bodies; the mutex gives `Sync` without ever being
/// contended (polling has `&mut self`).
struct ExactBody {
    stream: Mutex<ByteBody>,
    remaining: u64,
}

impl Body for ExactBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let stream = this
            .stream
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        match stream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn byte_stream(body: ByteBody, length: u64) -> ByteStream {
    ByteStream::from_body_1_x(ExactBody {
        stream: Mutex::new(body),
        remaining: length,
    })
}

/// A body that failed on the broker's side (the client's upload broke off,
/// or the broker stopped it) surfaces as a dispatch failure, not as a store
/// problem: the caller knows why it stopped the stream.
fn body_failed<E, R>(err: &SdkError<E, R>) -> bool {
    matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
    )
}

impl S3Store {
    pub(crate) async fn put_stream_impl(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError> {
        let mut req = self
            .client()
            .put_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .content_type(content_type)
            .content_length(length as i64)
            .body(byte_stream(body, length));
        if let Some(sha) = sha256 {
            req = req
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(sha.to_base64());
        }
        match req
            .customize()
            .config_override(self.long_call(None))
            .send()
            .await
        {
            Ok(out) => Ok(out.e_tag().map(|t| t.trim_matches('"').to_owned())),
            Err(e) if body_failed(&e) => Err(StoreError::body_failed()),
            Err(e) => Err(classify(e)),
        }
    }

    pub(crate) async fn upload_part_impl(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError> {
        let res = self
            .client()
            .upload_part()
            .bucket(self.bucket())
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(number as i32)
            .content_length(length as i64)
            .body(byte_stream(body, length))
            // No automatic CRC32 on parts: the multipart upload was created
            // without a checksum algorithm, and Garage refuses parts whose
            // checksum type differs from the upload's.
            .customize()
            .config_override(
                self.long_call(None)
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired),
            )
            .send()
            .await;
        match res {
            Ok(out) => out
                .e_tag()
                .map(|t| t.trim_matches('"').to_owned())
                .ok_or_else(|| StoreError::Refused("UploadPart gave no ETag".into())),
            Err(e) if body_failed(&e) => Err(StoreError::body_failed()),
            Err(e) => Err(classify(e)),
        }
    }

    pub(crate) async fn sha256_impl(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<Sha256Digest>, StoreError> {
        let res = self
            .client()
            .get_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                return Ok(None);
            }
            Err(e) => return Err(classify(e)),
        };
        let mut body = out.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| StoreError::Unavailable("reading the object".into()))?;
            hasher.update(&chunk);
        }
        Ok(Some(Sha256Digest::from_bytes(hasher.finalize().into())))
    }
}
