//! Reading objects: `GetObject` (with ranges) and `HeadObject`, the
//! conditional-request rules they share with `CopyObject`, and a body of
//! known length (one data file, or a folder's pieces) so responses carry
//! `Content-Length`.

use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt as _};
use s3s::dto::{
    ChecksumMode, ChecksumType, ETag, ETagCondition, GetObjectInput, GetObjectOutput,
    HeadObjectInput, HeadObjectOutput, StreamingBlob, Timestamp,
};
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{S3Response, S3Result, s3_error};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;

use super::Backend;
use crate::disk::ObjectMeta;
use crate::ingest::internal;
use crate::pieces::{self, Lease, READ_CHUNK};

pub(crate) fn sha256_b64(meta: &ObjectMeta) -> Option<String> {
    hex::decode(&meta.sha256).ok().map(|raw| B64.encode(raw))
}

fn etag_matches(cond: &ETagCondition, meta: &ObjectMeta) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(etag) => etag.value() == meta.etag,
    }
}

/// HTTP dates have whole seconds, so compare at that precision.
fn modified_after(meta: &ObjectMeta, since: &Timestamp) -> bool {
    let since: OffsetDateTime = since.clone().into();
    meta.last_modified().unix_timestamp() > since.unix_timestamp()
}

/// RFC 9110 §13.2.2 order with S3's precedence: a passing `If-Match` overrides
/// `If-Unmodified-Since`, a failing `If-None-Match` overrides
/// `If-Modified-Since`. Reads answer 304 where a copy answers 412.
pub(crate) fn check_read_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    is_copy: bool,
) -> S3Result<()> {
    let failed = || {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    };
    if let Some(cond) = if_match {
        if !etag_matches(cond, meta) {
            return Err(failed());
        }
    } else if let Some(since) = if_unmodified_since
        && modified_after(meta, since)
    {
        return Err(failed());
    }
    let not_modified = match if_none_match {
        Some(cond) => etag_matches(cond, meta),
        None => if_modified_since.is_some_and(|since| !modified_after(meta, since)),
    };
    if not_modified {
        return Err(if is_copy {
            failed()
        } else {
            s3_error!(NotModified)
        });
    }
    Ok(())
}

/// Object headers shared by GET and HEAD.
struct Common {
    etag: ETag,
    last_modified: Timestamp,
    checksum_sha256: Option<String>,
    checksum_crc32: Option<String>,
    checksum_crc32c: Option<String>,
    checksum_crc64nvme: Option<String>,
    checksum_sha1: Option<String>,
    checksum_type: Option<ChecksumType>,
}

fn common(meta: &ObjectMeta, mode: Option<&ChecksumMode>, whole: bool) -> Common {
    // Checksums describe the whole object, so a range never gets them (as S3).
    let with_sums = whole && mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    let pick = |v: &Option<String>| if with_sums { v.clone() } else { None };
    Common {
        etag: ETag::Strong(meta.etag.clone()),
        last_modified: Timestamp::from(meta.last_modified()),
        checksum_sha256: if with_sums { sha256_b64(meta) } else { None },
        checksum_crc32: pick(&meta.checksums.crc32),
        checksum_crc32c: pick(&meta.checksums.crc32c),
        checksum_crc64nvme: pick(&meta.checksums.crc64nvme),
        checksum_sha1: pick(&meta.checksums.sha1),
        checksum_type: with_sums.then(|| ChecksumType::from(ChecksumType::FULL_OBJECT.to_owned())),
    }
}

async fn lookup(backend: &Backend, key: &str) -> S3Result<Arc<ObjectMeta>> {
    backend
        .disk
        .get(key)
        .await
        .map_err(internal)?
        .ok_or_else(|| s3_error!(NoSuchKey, "The specified key does not exist."))
}

fn refuse_part_number(part_number: Option<i32>) -> S3Result<()> {
    match part_number {
        None => Ok(()),
        Some(_) => Err(s3_error!(
            NotImplemented,
            "partNumber reads are not supported."
        )),
    }
}

pub(crate) async fn head_object(
    backend: &Backend,
    input: &HeadObjectInput,
) -> S3Result<S3Response<HeadObjectOutput>> {
    refuse_part_number(input.part_number)?;
    let meta = lookup(backend, &input.key).await?;
    check_read_conditions(
        &meta,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
        false,
    )?;
    let c = common(&meta, input.checksum_mode.as_ref(), true);
    let a = &meta.attrs;
    Ok(S3Response::new(HeadObjectOutput {
        accept_ranges: Some("bytes".into()),
        content_length: i64::try_from(meta.size).ok(),
        content_type: a.content_type.clone(),
        content_encoding: a.content_encoding.clone(),
        content_disposition: a.content_disposition.clone(),
        content_language: a.content_language.clone(),
        cache_control: a.cache_control.clone(),
        metadata: Some(a.metadata.clone().into_iter().collect()),
        e_tag: Some(c.etag),
        last_modified: Some(c.last_modified),
        checksum_sha256: c.checksum_sha256,
        checksum_crc32: c.checksum_crc32,
        checksum_crc32c: c.checksum_crc32c,
        checksum_crc64nvme: c.checksum_crc64nvme,
        checksum_sha1: c.checksum_sha1,
        checksum_type: c.checksum_type,
        parts_count: meta.parts_count.and_then(|n| i32::try_from(n).ok()),
        ..Default::default()
    }))
}

pub(crate) async fn get_object(
    backend: &Backend,
    input: GetObjectInput,
) -> S3Result<S3Response<GetObjectOutput>> {
    refuse_part_number(input.part_number)?;
    // A concurrent overwrite may delete the data between the index lookup
    // and the open; the index then already names the new one, so look again.
    let mut attempt = 0;
    let (meta, source) = loop {
        let meta = lookup(backend, &input.key).await?;
        match open(backend, &meta).await.map_err(internal)? {
            Some(source) => break (meta, source),
            None if attempt < 2 => attempt += 1,
            None => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
        }
    };
    check_read_conditions(
        &meta,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
        false,
    )?;

    let size = meta.size;
    let range = match &input.range {
        None => 0..size,
        Some(r) => r
            .check(size)
            .map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?,
    };
    let len = range.end - range.start;
    let inner = match source {
        Source::File(mut file) => {
            if range.start > 0 {
                file.seek(SeekFrom::Start(range.start))
                    .await
                    .map_err(internal)?;
            }
            ReaderStream::with_capacity(file.take(len), READ_CHUNK).boxed()
        }
        Source::Pieces(lease) => pieces::stream(lease, &meta.pieces, range.clone()),
    };
    let body = FileBody {
        inner: Mutex::new(inner),
        remaining: usize::try_from(len).map_err(internal)?,
    };
    let content_range = input.range.is_some().then(|| {
        format!(
            "bytes {}-{}/{size}",
            range.start,
            range.end.saturating_sub(1)
        )
    });

    let c = common(&meta, input.checksum_mode.as_ref(), input.range.is_none());
    let a = &meta.attrs;
    Ok(S3Response::new(GetObjectOutput {
        body: Some(StreamingBlob::new(body)),
        accept_ranges: Some("bytes".into()),
        content_length: i64::try_from(len).ok(),
        content_range,
        // The `response-*` overrides of a signed GET, as S3 honours them:
        // the broker's download grants set the type and, for anything but
        // images, `attachment`.
        content_type: input
            .response_content_type
            .clone()
            .or_else(|| a.content_type.clone()),
        content_encoding: a.content_encoding.clone(),
        content_disposition: input
            .response_content_disposition
            .clone()
            .or_else(|| a.content_disposition.clone()),
        content_language: a.content_language.clone(),
        cache_control: input
            .response_cache_control
            .clone()
            .or_else(|| a.cache_control.clone()),
        metadata: Some(a.metadata.clone().into_iter().collect()),
        e_tag: Some(c.etag),
        last_modified: Some(c.last_modified),
        checksum_sha256: c.checksum_sha256,
        checksum_crc32: c.checksum_crc32,
        checksum_crc32c: c.checksum_crc32c,
        checksum_crc64nvme: c.checksum_crc64nvme,
        checksum_sha1: c.checksum_sha1,
        checksum_type: c.checksum_type,
        parts_count: meta.parts_count.and_then(|n| i32::try_from(n).ok()),
        ..Default::default()
    }))
}

/// An object's bytes, opened: its data file, or its folder of pieces held
/// in place.
enum Source {
    File(tokio::fs::File),
    Pieces(Lease),
}

/// `None` when the object's data is gone: replaced or deleted since `meta`
/// was looked up.
async fn open(backend: &Backend, meta: &ObjectMeta) -> std::io::Result<Option<Source>> {
    if !meta.pieces.is_empty() {
        return Ok(backend.disk.enter(meta).await?.map(Source::Pieces));
    }
    match tokio::fs::File::open(backend.disk.data_path(meta)).await {
        Ok(file) => Ok(Some(Source::File(file))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// A region of an object as a body whose exact length s3s and hyper can
/// see. s3s needs `Sync` bodies; the mutex gives it without ever being
/// contended (polling has `&mut self`).
struct FileBody {
    inner: Mutex<BoxStream<'static, std::io::Result<Bytes>>>,
    remaining: usize,
}

impl Stream for FileBody {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let inner = this.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.remaining = this.remaining.saturating_sub(bytes.len());
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(err))) => {
                tracing::error!(%err, "reading an object failed mid-response");
                Poll::Ready(Some(Err(Box::new(err))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl ByteStream for FileBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining)
    }
}
