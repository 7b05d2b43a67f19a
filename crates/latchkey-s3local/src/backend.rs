//! The `s3s::S3` implementation: bucket and single-object operations, and the
//! delegation of listing and multipart to their own modules.
//!
//! Operations not listed here answer s3s's default `NotImplemented`.

use std::sync::Arc;

use s3s::dto::{
    Bucket, CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopySource, CreateBucketInput,
    CreateBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, DeletedObject, ETag, ETagCondition, GetBucketLocationInput,
    GetBucketLocationOutput, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput,
    HeadObjectInput, HeadObjectOutput, ListBucketsInput, ListBucketsOutput, MetadataDirective,
    Owner, PutObjectInput, PutObjectOutput, Timestamp,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use crate::ObjectEvents;
use crate::disk::{Attrs, CommitError, Condition, Disk, ObjectMeta, Staged, now_ms};
use crate::ingest::{self, Claims, internal};
use crate::multipart::Uploads;

mod read;

/// Cheap to clone: the HTTP service holds one, and [`crate::InProcess`]
/// another, over the same disk and uploads.
#[derive(Clone)]
pub(crate) struct Backend {
    pub(crate) disk: Arc<Disk>,
    pub(crate) uploads: Arc<Uploads>,
    pub(crate) bucket: String,
    region: String,
    events: Option<Arc<dyn ObjectEvents>>,
}

pub(crate) fn owner() -> Owner {
    Owner {
        display_name: Some("latchkey".into()),
        id: Some("latchkey".into()),
    }
}

/// Turns `If-None-Match` / `If-Match` on a write into a [`Condition`].
pub(crate) fn write_condition(
    if_none_match: Option<&ETagCondition>,
    if_match: Option<&ETagCondition>,
) -> S3Result<Condition> {
    match (if_none_match, if_match) {
        (None, None) => Ok(Condition::None),
        (Some(ETagCondition::Any), None) => Ok(Condition::IfNoneMatchAny),
        (None, Some(ETagCondition::Any)) => Ok(Condition::IfMatch(None)),
        (None, Some(ETagCondition::ETag(etag))) => {
            Ok(Condition::IfMatch(Some(etag.value().to_owned())))
        }
        (Some(ETagCondition::ETag(_)), _) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write only supports '*'."
        )),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "If-Match and If-None-Match cannot be combined."
        )),
    }
}

impl Backend {
    pub(crate) fn new(
        disk: Disk,
        uploads: Uploads,
        bucket: String,
        region: String,
        events: Option<Arc<dyn ObjectEvents>>,
    ) -> Self {
        Self {
            disk: Arc::new(disk),
            uploads: Arc::new(uploads),
            bucket,
            region,
            events,
        }
    }

    pub(crate) fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if bucket == self.bucket {
            Ok(())
        } else {
            Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist."
            ))
        }
    }

    /// Makes `staged` the object described by `meta`, then tells the broker.
    pub(crate) async fn commit(
        &self,
        staged: Staged,
        meta: ObjectMeta,
        cond: &Condition,
    ) -> S3Result<Arc<ObjectMeta>> {
        let key = meta.key.clone();
        match self.disk.commit(staged, meta, cond).await {
            Ok(meta) => {
                if let Some(events) = &self.events {
                    events.object_created(&meta.key, meta.size, &meta.etag);
                }
                Ok(meta)
            }
            Err(CommitError::Precondition) => {
                let exists = self.disk.get(&key).await.map_err(internal)?.is_some();
                Err(precondition_error(cond, exists))
            }
            Err(CommitError::Io(err)) => Err(internal(err)),
        }
    }

    async fn remove(&self, key: &str) -> S3Result<()> {
        let removed = self.disk.remove(key).await.map_err(internal)?;
        if removed.is_some()
            && let Some(events) = &self.events
        {
            events.object_removed(key);
        }
        Ok(())
    }
}

pub(crate) fn precondition_error(cond: &Condition, exists: bool) -> s3s::S3Error {
    if matches!(cond, Condition::IfMatch(_)) && !exists {
        s3_error!(NoSuchKey, "The specified key does not exist.")
    } else {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    }
}

/// Features a client may ask for that this store does not have. Refusing is
/// better than silently storing an object without the guarantee requested.
fn refuse_unsupported(input: &PutObjectInput) -> S3Result<()> {
    crate::access::refuse_acl(
        input.acl.as_ref(),
        [
            input.grant_full_control.as_ref(),
            input.grant_read.as_ref(),
            input.grant_read_acp.as_ref(),
            input.grant_write_acp.as_ref(),
        ],
    )?;
    let asked = input.sse_customer_algorithm.is_some()
        || input.sse_customer_key.is_some()
        || input.ssekms_key_id.is_some()
        || input.object_lock_mode.is_some()
        || input.object_lock_retain_until_date.is_some()
        || input.object_lock_legal_hold_status.is_some()
        || input.write_offset_bytes.is_some();
    if asked {
        return Err(s3_error!(
            NotImplemented,
            "Encryption with customer keys, object lock and appends are not supported by this store."
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        if req.input.bucket == self.bucket {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        Err(s3_error!(
            NotImplemented,
            "This store serves exactly one bucket."
        ))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.check_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.check_bucket(&req.input.bucket)?;
        // us-east-1 is reported as an empty constraint, as AWS does.
        let location_constraint = (self.region != "us-east-1").then(|| self.region.clone().into());
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let bucket = Bucket {
            name: Some(self.bucket.clone()),
            creation_date: Some(Timestamp::from(self.disk.bucket_created())),
            bucket_region: Some(self.region.clone()),
        };
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(vec![bucket]),
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        refuse_unsupported(&input)?;
        let cond = write_condition(input.if_none_match.as_ref(), input.if_match.as_ref())?;
        // Fail fast before reading the body; the authoritative check is
        // repeated in the index's commit. An unconditional PUT skips the
        // lookup.
        if !matches!(cond, Condition::None) {
            let existing = self.disk.get(&input.key).await.map_err(internal)?;
            if !cond.check(existing.as_deref()) {
                return Err(precondition_error(&cond, existing.is_some()));
            }
        }
        let claims = Claims {
            content_length: input.content_length,
            content_md5: input.content_md5,
            sha256: input.checksum_sha256,
            crc32: input.checksum_crc32,
            crc32c: input.checksum_crc32c,
            crc64nvme: input.checksum_crc64nvme,
            sha1: input.checksum_sha1,
            algorithm: input.checksum_algorithm.clone(),
        };
        let wants_sha256 = claims.sha256.is_some()
            || input
                .checksum_algorithm
                .as_ref()
                .is_some_and(|a| a.as_str() == "SHA256");
        let got = ingest::receive(
            &self.disk,
            input.body,
            claims,
            req.trailing_headers,
            ingest::Sha256Need::Always,
        )
        .await?;
        let sha256 = got
            .sha256_hex()
            .ok_or_else(|| internal("an object body was not hashed"))?;
        let meta = ObjectMeta {
            key: input.key,
            data: String::new(),
            size: got.size,
            etag: got.md5_hex(),
            sha256,
            checksums: got.checksums.clone(),
            attrs: Attrs {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            },
            last_modified_ms: now_ms(),
            parts_count: None,
            pieces: Vec::new(),
        };
        let meta = self.commit(got.staged, meta, &cond).await?;
        let c = &meta.checksums;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            checksum_sha256: wants_sha256.then(|| read::sha256_b64(&meta)).flatten(),
            checksum_crc32: c.crc32.clone(),
            checksum_crc32c: c.crc32c.clone(),
            checksum_crc64nvme: c.crc64nvme.clone(),
            checksum_sha1: c.sha1.clone(),
            size: i64::try_from(meta.size).ok(),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.check_bucket(&req.input.bucket)?;
        read::get_object(self, req.input).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.check_bucket(&req.input.bucket)?;
        read::head_object(self, &req.input).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        if input.version_id.is_some() {
            return Err(s3_error!(NotImplemented, "This store has no versioning."));
        }
        if let Some(cond) = &input.if_match {
            let cond = write_condition(None, Some(cond))?;
            let existing = self.disk.get(&input.key).await.map_err(internal)?;
            if !cond.check(existing.as_deref()) {
                return Err(precondition_error(&cond, existing.is_some()));
            }
        }
        self.remove(&input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        for object in input.delete.objects {
            self.remove(&object.key).await?;
            if !quiet {
                deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        crate::access::refuse_acl(
            input.acl.as_ref(),
            [
                input.grant_full_control.as_ref(),
                input.grant_read.as_ref(),
                input.grant_read_acp.as_ref(),
                input.grant_write_acp.as_ref(),
            ],
        )?;
        let CopySource::Bucket {
            bucket: src_bucket,
            key: src_key,
            version_id,
        } = &input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Only bucket/key copy sources are supported."
            ));
        };
        self.check_bucket(src_bucket)?;
        if version_id.is_some() {
            return Err(s3_error!(NotImplemented, "This store has no versioning."));
        }
        let src = self
            .disk
            .get(src_key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchKey, "The specified key does not exist."))?;
        read::check_read_conditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
            true,
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && input.key == **src_key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."
            ));
        }
        let attrs = if replace {
            Attrs {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            }
        } else {
            src.attrs.clone()
        };
        let staged = self.disk.clone_data(&src).await.map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                // Replaced or deleted between the lookup and the link.
                s3_error!(NoSuchKey, "The specified key does not exist.")
            } else {
                internal(err)
            }
        })?;
        let meta = ObjectMeta {
            key: input.key,
            data: String::new(),
            attrs,
            last_modified_ms: now_ms(),
            ..(*src).clone()
        };
        let meta = self.commit(staged, meta, &Condition::None).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(meta.etag.clone())),
                last_modified: Some(Timestamp::from(meta.last_modified())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<s3s::dto::ListObjectsV2Output>> {
        self.check_bucket(&req.input.bucket)?;
        crate::list::list_objects_v2(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_objects(
        &self,
        req: S3Request<s3s::dto::ListObjectsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListObjectsOutput>> {
        self.check_bucket(&req.input.bucket)?;
        crate::list::list_objects_v1(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<s3s::dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CreateMultipartUploadOutput>> {
        self.check_bucket(&req.input.bucket)?;
        crate::multipart::create(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn upload_part(
        &self,
        req: S3Request<s3s::dto::UploadPartInput>,
    ) -> S3Result<S3Response<s3s::dto::UploadPartOutput>> {
        self.check_bucket(&req.input.bucket)?;
        crate::multipart::upload_part(self, req.input, req.trailing_headers)
            .await
            .map(S3Response::new)
    }

    async fn list_parts(
        &self,
        req: S3Request<s3s::dto::ListPartsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListPartsOutput>> {
        self.check_bucket(&req.input.bucket)?;
        crate::multipart::list_parts(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<s3s::dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CompleteMultipartUploadOutput>> {
        self.check_bucket(&req.input.bucket)?;
        // S3 answers the object's URL as `Location`; some clients (Uppy's
        // s3mini) refuse a result without it. Path-style, as this store is.
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let mut out = crate::multipart::complete(self, req.input).await?;
        if let (Some(host), Some(key)) = (host, &out.key) {
            let path: String = key
                .split('/')
                .map(|seg| {
                    percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("/");
            out.location = Some(format!("http://{host}/{}/{path}", self.bucket));
        }
        Ok(S3Response::new(out))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<s3s::dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::AbortMultipartUploadOutput>> {
        self.check_bucket(&req.input.bucket)?;
        crate::multipart::abort(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<s3s::dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListMultipartUploadsOutput>> {
        self.check_bucket(&req.input.bucket)?;
        crate::multipart::list_uploads(self, req.input).map(S3Response::new)
    }
}
