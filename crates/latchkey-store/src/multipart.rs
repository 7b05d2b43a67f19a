//! Multipart uploads as the broker drives them: create one for a grant, list
//! what the client has sent (resume, and the check before completing),
//! complete it with the parts the broker verified, or abort it.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use latchkey_domain::ObjectKey;

use crate::s3::{S3Store, classify};
use crate::{Part, StoreError};

/// S3 answers 404 `NoSuchUpload` for an upload id it does not know (already
/// completed, aborted, or never created).
fn no_such_upload<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => se.err().code() == Some("NoSuchUpload"),
        _ => false,
    }
}

/// The largest page `ListParts` returns; S3's own maximum.
const PAGE: i32 = 1000;

impl S3Store {
    pub(crate) async fn create_multipart_impl(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError> {
        let out = self
            .client()
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key.as_str())
            .content_type(content_type)
            .send()
            .await
            .map_err(classify)?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Refused("CreateMultipartUpload gave no upload id".into()))
    }

    pub(crate) async fn list_parts_impl(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let res = self
                .client()
                .list_parts()
                .bucket(self.bucket())
                .key(key.as_str())
                .upload_id(upload_id)
                .max_parts(PAGE)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let out = match res {
                Ok(out) => out,
                Err(e) if no_such_upload(&e) => return Ok(None),
                Err(e) => return Err(classify(e)),
            };
            for p in out.parts() {
                let (Some(number), Some(etag)) = (p.part_number(), p.e_tag()) else {
                    continue;
                };
                parts.push(Part {
                    number: number.max(0) as u32,
                    size: p.size().unwrap_or(0).max(0) as u64,
                    etag: etag.trim_matches('"').to_owned(),
                });
            }
            let next = out.next_part_number_marker().map(str::to_owned);
            if out.is_truncated() != Some(true) || next.is_none() || next == marker {
                break;
            }
            marker = next;
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(Some(parts))
    }

    pub(crate) async fn complete_multipart_impl(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<Option<String>, StoreError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number as i32)
                            .e_tag(format!("\"{}\"", p.etag))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let res = self
            .client()
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(completed)
            // Assembling a large object can take a while on AWS.
            .customize()
            .config_override(self.long_call(Some(self.timeout() * 60)))
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(
                out.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
            )),
            Err(e) if no_such_upload(&e) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    pub(crate) async fn abort_multipart_impl(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let res = self
            .client()
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Already gone (completed, aborted, or swept by a lifecycle rule).
            Err(e) if no_such_upload(&e) => Ok(()),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }
}
