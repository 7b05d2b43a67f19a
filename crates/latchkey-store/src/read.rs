//! Whole small objects in and out of memory: the photo pipeline reads a
//! quarantined upload and writes its clean original and variants.

use aws_sdk_s3::error::SdkError;
use bytes::Bytes;
use futures::StreamExt;
use latchkey_domain::{ObjectKey, Sha256Digest};
use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::s3::{S3Store, classify};

impl S3Store {
    pub(crate) async fn read_impl(
        &self,
        key: &ObjectKey,
        max: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
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
        if out
            .content_length()
            .is_some_and(|n| n < 0 || n as u64 > max)
        {
            return Err(StoreError::Refused(format!(
                "the object is larger than {max} bytes"
            )));
        }
        let mut body = out.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| StoreError::Unavailable("reading the object".into()))?;
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(StoreError::Refused(format!(
                    "the object is larger than {max} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    pub(crate) async fn put_bytes_impl(
        &self,
        key: &ObjectKey,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<String>, StoreError> {
        let sha = Sha256Digest::from_bytes(Sha256::digest(&bytes).into());
        let length = bytes.len() as u64;
        let body = futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
        self.put_stream_impl(key, content_type, length, Some(sha), body)
            .await
    }
}
