//! Receiving a request body: stream it to a temp file while hashing, fsync,
//! then check it against everything the client claimed (length, Content-MD5,
//! `x-amz-checksum-*` in headers or aws-chunked trailers).
//!
//! Nothing is held beyond two batches of chunks (one filling, one being
//! written), so a 1 GiB body costs the same memory as a 1 KiB one. A body
//! that fails any check never becomes an object: the temp file is dropped
//! with the error.
//!
//! The chunks arrive as `Bytes` and are kept as they are: a batch is hashed
//! and written on a blocking thread while the next one arrives, so no byte
//! is copied on the way to the file, and the hashing (MD5 alone costs more
//! than the rest of a large PUT) runs beside the network instead of on the
//! task that reads it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::StreamExt as _;
use md5::Md5;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders, s3_error};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::disk::{Checksums, Disk, Staged};

/// Bytes per batch handed to the blocking thread: large enough that the
/// hand-off is rare, small enough that two batches are little memory. A
/// body declared shorter makes one batch of its own length: under load
/// most uploads are small, and what each one in flight holds adds up.
const WRITE_BUFFER: usize = 1 << 20;
const MIN_WRITE_BUFFER: usize = 8 << 10;

/// What the client said about the body it is sending.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    pub content_length: Option<i64>,
    /// Base64 md5, from `Content-MD5`.
    pub content_md5: Option<String>,
    /// Base64 values from `x-amz-checksum-*` headers (or trailers, filled in
    /// once the body has been read).
    pub sha256: Option<String>,
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    /// `x-amz-sdk-checksum-algorithm`: a checksum of this kind may arrive in a
    /// trailer, so hash for it from the start.
    pub algorithm: Option<ChecksumAlgorithm>,
}

/// Whether the body's SHA-256 is needed whatever the client claims: an
/// object keeps one; a multipart part only when the client claims one (its
/// object's SHA-256 is taken over its parts).
#[derive(Debug)]
pub(crate) enum Sha256Need {
    Always,
    /// A part. `chain` is its upload's running SHA-256 when this part is
    /// the next one of it (see `multipart::Chain`), continued over the body.
    Part {
        chain: Option<Sha256>,
    },
}

/// A body that arrived whole and matched every claim.
#[derive(Debug)]
pub(crate) struct Received {
    pub staged: Staged,
    pub size: u64,
    pub md5: [u8; 16],
    /// `None` only for a part nothing claimed a SHA-256 of (a profile of
    /// tus uploads showed hashing each part and then the assembled object
    /// again at ~6% of the CPU).
    pub sha256: Option<[u8; 32]>,
    /// The running SHA-256 a part was given, continued over its bytes.
    pub chain: Option<Sha256>,
    pub checksums: Checksums,
}

impl Received {
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.map(hex::encode)
    }
}

/// Logs `err` and returns an S3 `InternalError` that reveals nothing about it.
pub(crate) fn internal(err: impl std::fmt::Display) -> S3Error {
    tracing::error!(%err, "local store internal error");
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
}

/// Maps an error from the request body stream. They all come from the client
/// side (a body that does not match its signed sha256, a short or long body, a
/// broken chunk signature, a dropped connection), so they are 4xx, never 500.
fn body_error(err: &(dyn std::error::Error + Send + Sync)) -> S3Error {
    let text = err.to_string();
    tracing::debug!(%text, "request body rejected");
    if text.contains("Sha256Mismatch") {
        // s3s's UploadStream: the body does not hash to the signed
        // x-amz-content-sha256. AWS answers 400 XAmzContentSHA256Mismatch.
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        return e;
    }
    if text.contains("SignatureMismatch") {
        return s3_error!(SignatureDoesNotMatch, "A chunk signature does not match.");
    }
    s3_error!(
        IncompleteBody,
        "The request body did not match its declared length or ended early."
    )
}

fn hasher_for(claims: &Claims) -> ChecksumHasher {
    let alg = claims.algorithm.as_ref().map(ChecksumAlgorithm::as_str);
    let wants = |claimed: &Option<String>, name: &str| claimed.is_some() || alg == Some(name);
    ChecksumHasher {
        crc32: wants(&claims.crc32, ChecksumAlgorithm::CRC32).then(Default::default),
        crc32c: wants(&claims.crc32c, ChecksumAlgorithm::CRC32C).then(Default::default),
        crc64nvme: wants(&claims.crc64nvme, ChecksumAlgorithm::CRC64NVME).then(Default::default),
        sha1: wants(&claims.sha1, ChecksumAlgorithm::SHA1).then(s3s::crypto::Sha1::new),
        sha256: None,
    }
}

/// Streams `body` into a new temp file under `disk` and verifies it.
pub(crate) async fn receive(
    disk: &Disk,
    body: Option<StreamingBlob>,
    mut claims: Claims,
    trailers: Option<TrailingHeaders>,
    need: Sha256Need,
) -> S3Result<Received> {
    if let Some(md5) = &claims.content_md5
        && B64.decode(md5).map_or(true, |d| d.len() != 16)
    {
        return Err(s3_error!(
            InvalidDigest,
            "The Content-MD5 you specified is not valid."
        ));
    }
    if claims.content_length.is_some_and(|n| n < 0) {
        return Err(s3_error!(InvalidArgument, "negative Content-Length"));
    }

    let staged = Staged::new(disk.temp_path());
    let path = staged.path().to_path_buf();
    let file = crate::disk::blocking(move || std::fs::File::create(path))
        .await
        .map_err(internal)?;
    let batch_len = claims
        .content_length
        .and_then(|n| usize::try_from(n).ok())
        .map_or(WRITE_BUFFER, |n| n.clamp(MIN_WRITE_BUFFER, WRITE_BUFFER));
    let (always, chain) = match need {
        Sha256Need::Always => (true, None),
        Sha256Need::Part { chain } => (false, chain),
    };
    // A trailer may still claim a SHA-256, so a body with trailers is hashed.
    let hash_sha256 = always
        || claims.sha256.is_some()
        || trailers.is_some()
        || claims
            .algorithm
            .as_ref()
            .is_some_and(|a| a.as_str() == ChecksumAlgorithm::SHA256);
    let mut writer = Writer::Idle(Box::new(Sink {
        file,
        md5: Md5::new(),
        sha256: hash_sha256.then(Sha256::new),
        chain,
        extra: hasher_for(&claims),
        size: 0,
    }));
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;

    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| body_error(e.as_ref()))?;
            batched += chunk.len();
            batch.push(chunk);
            if batched >= batch_len {
                writer = writer.write(std::mem::take(&mut batch)).await?;
                batched = 0;
            }
        }
    }
    let sink = writer.finish(batch).await?;

    if let Some(headers) = trailers.and_then(|t| t.take()) {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        claims.sha256 = claims.sha256.or_else(|| get("x-amz-checksum-sha256"));
        claims.crc32 = claims.crc32.or_else(|| get("x-amz-checksum-crc32"));
        claims.crc32c = claims.crc32c.or_else(|| get("x-amz-checksum-crc32c"));
        claims.crc64nvme = claims.crc64nvme.or_else(|| get("x-amz-checksum-crc64nvme"));
        claims.sha1 = claims.sha1.or_else(|| get("x-amz-checksum-sha1"));
    }

    let Sink {
        md5,
        sha256,
        chain,
        extra,
        size,
        ..
    } = *sink;
    let received = Received {
        staged,
        size,
        md5: md5.finalize().into(),
        sha256: sha256.map(|h| h.finalize().into()),
        chain,
        checksums: Checksums::default(),
    };
    verify(received, &claims, extra)
}

/// The temp file and the hashes of what was written to it.
struct Sink {
    file: std::fs::File,
    md5: Md5,
    sha256: Option<Sha256>,
    chain: Option<Sha256>,
    extra: ChecksumHasher,
    size: u64,
}

impl Sink {
    fn take(&mut self, batch: &[Bytes]) -> std::io::Result<()> {
        use std::io::Write as _;
        for chunk in batch {
            self.md5.update(chunk);
            if let Some(sha256) = &mut self.sha256 {
                sha256.update(chunk);
            }
            if let Some(chain) = &mut self.chain {
                chain.update(chunk);
            }
            self.extra.update(chunk);
            self.file.write_all(chunk)?;
            self.size += chunk.len() as u64;
        }
        Ok(())
    }
}

/// The sink, or the batch being written to it on a blocking thread.
enum Writer {
    Idle(Box<Sink>),
    Busy(JoinHandle<std::io::Result<Box<Sink>>>),
}

impl Writer {
    /// Waits for the batch before (one is written at a time, in order),
    /// then starts writing `batch`.
    async fn write(self, batch: Vec<Bytes>) -> S3Result<Writer> {
        let mut sink = self.sink().await?;
        Ok(Writer::Busy(tokio::task::spawn_blocking(move || {
            sink.take(&batch)?;
            Ok(sink)
        })))
    }

    /// Writes the last batch and fsyncs the file.
    async fn finish(self, batch: Vec<Bytes>) -> S3Result<Box<Sink>> {
        let mut sink = self.sink().await?;
        crate::disk::blocking(move || {
            sink.take(&batch)?;
            sink.file.sync_all()?;
            if sink.size >= crate::disk::UNCACHED_FROM {
                crate::disk::drop_from_cache(&sink.file);
            }
            Ok(sink)
        })
        .await
        .map_err(internal)
    }

    async fn sink(self) -> S3Result<Box<Sink>> {
        match self {
            Writer::Idle(sink) => Ok(sink),
            Writer::Busy(task) => task.await.map_err(internal)?.map_err(internal),
        }
    }
}

fn verify(mut r: Received, claims: &Claims, extra: ChecksumHasher) -> S3Result<Received> {
    if let Some(n) = claims.content_length
        && u64::try_from(n).ok() != Some(r.size)
    {
        return Err(s3_error!(
            IncompleteBody,
            "The request body did not match its declared length."
        ));
    }
    if let Some(claimed) = &claims.content_md5
        && *claimed != B64.encode(r.md5)
    {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    // Hashed whenever a SHA-256 can be claimed (see `receive`), so `None`
    // here cannot meet a claim; refusing it keeps that true if it changes.
    if let Some(claimed) = &claims.sha256
        && r.sha256.is_none_or(|got| *claimed != B64.encode(got))
    {
        return Err(s3_error!(
            BadDigest,
            "The x-amz-checksum-sha256 you specified did not match what we received."
        ));
    }
    let computed = extra.finalize();
    for (name, claimed, got) in [
        ("crc32", &claims.crc32, &computed.checksum_crc32),
        ("crc32c", &claims.crc32c, &computed.checksum_crc32c),
        ("crc64nvme", &claims.crc64nvme, &computed.checksum_crc64nvme),
        ("sha1", &claims.sha1, &computed.checksum_sha1),
    ] {
        if let Some(claimed) = claimed
            && Some(claimed) != got.as_ref()
        {
            return Err(s3_error!(
                BadDigest,
                "The x-amz-checksum-{name} you specified did not match what we received."
            ));
        }
    }
    r.checksums = Checksums {
        crc32: computed.checksum_crc32,
        crc32c: computed.checksum_crc32c,
        crc64nvme: computed.checksum_crc64nvme,
        sha1: computed.checksum_sha1,
    };
    Ok(r)
}
