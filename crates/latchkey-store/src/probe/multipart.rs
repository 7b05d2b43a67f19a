//! The `multipart` mode end to end: the broker creates and completes the
//! upload with its own client; parts go through presigned part URLs with a
//! signed length, as the client sends them. Two parts, 5 MiB and 1 byte (S3's
//! minimum for every part but the last), then the abort path.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use time::OffsetDateTime;

use super::Ctx;
use super::http::{head_size, sdk_error, sdk_status, send};
use super::report::{MULTIPART, ProbeRow};

const PART: usize = 5 * 1024 * 1024;

pub(crate) async fn multipart(ctx: &Ctx<'_>) -> ProbeRow {
    try_multipart(ctx)
        .await
        .unwrap_or_else(|e| ProbeRow::error(MULTIPART, e))
}

async fn try_multipart(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let key = ctx.key("multipart/completed");
    let id = match create(ctx, &key).await {
        Ok(id) => id,
        Err((Some(501), why)) => {
            return Ok(ProbeRow::new(MULTIPART, false, format!("create: {why}")));
        }
        Err((_, why)) => return Err(format!("create: {why}")),
    };
    let completed = match upload_and_complete(ctx, &key, &id).await {
        Ok(detail) => detail,
        Err(e) => {
            abort(ctx, &key, &id).await.ok();
            return Err(e);
        }
    };
    let aborted = abort_path(ctx).await?;
    Ok(ProbeRow::new(
        MULTIPART,
        true,
        format!("{completed}; {aborted}"),
    ))
}

async fn upload_and_complete(ctx: &Ctx<'_>, key: &str, id: &str) -> Result<String, String> {
    let first = upload_part(ctx, key, id, 1, vec![b'a'; PART]).await?;
    let second = upload_part(ctx, key, id, 2, vec![b'b']).await?;
    let parts = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(first).build())
        .parts(
            CompletedPart::builder()
                .part_number(2)
                .e_tag(second)
                .build(),
        )
        .build();
    ctx.sdk
        .complete_multipart_upload()
        .bucket(ctx.bucket())
        .key(key)
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await
        .map_err(|e| format!("complete: {}", sdk_error(&e)))?;
    let want = PART as u64 + 1;
    match head_size(ctx, key).await? {
        Some(size) if size == want => Ok(format!("5 MiB + 1 byte completed, size {size}")),
        other => Err(format!(
            "completed, but the object's size is {other:?}, not {want}"
        )),
    }
}

/// An aborted upload must be gone: its parts unlisted and no object made.
async fn abort_path(ctx: &Ctx<'_>) -> Result<String, String> {
    let key = ctx.key("multipart/aborted");
    let id = create(ctx, &key).await.map_err(|(_, why)| why)?;
    if let Err(e) = upload_part(ctx, &key, &id, 1, b"x".to_vec()).await {
        abort(ctx, &key, &id).await.ok();
        return Err(e);
    }
    abort(ctx, &key, &id).await?;
    let listed = ctx
        .sdk
        .list_parts()
        .bucket(ctx.bucket())
        .key(&key)
        .upload_id(&id)
        .send()
        .await;
    match listed {
        Err(e) if sdk_status(&e) == Some(404) => {}
        Err(e) => return Err(format!("list parts after abort: {}", sdk_error(&e))),
        Ok(_) => return Err("the upload's parts are still listed after abort".to_owned()),
    }
    if head_size(ctx, &key).await?.is_some() {
        return Err("an aborted upload left an object".to_owned());
    }
    Ok("abort: parts gone (404 NoSuchUpload)".to_owned())
}

/// The upload id, or the status (when there was one) and what went wrong.
async fn create(ctx: &Ctx<'_>, key: &str) -> Result<String, (Option<u16>, String)> {
    let out = ctx
        .sdk
        .create_multipart_upload()
        .bucket(ctx.bucket())
        .key(key)
        .content_type("application/octet-stream")
        .send()
        .await
        .map_err(|e| (sdk_status(&e), sdk_error(&e)))?;
    out.upload_id()
        .map(str::to_owned)
        .ok_or((None, "no upload id in the answer".to_owned()))
}

/// Uploads one part through a presigned URL that signs its length, and
/// returns its quoted ETag.
async fn upload_part(
    ctx: &Ctx<'_>,
    key: &str,
    id: &str,
    number: u32,
    body: Vec<u8>,
) -> Result<String, String> {
    let len = body.len().to_string();
    let number_s = number.to_string();
    let url = ctx
        .signer
        .presign(
            "PUT",
            &ctx.endpoint.object_url(key),
            &[("content-length", len.as_str())],
            &[("partNumber", number_s.as_str()), ("uploadId", id)],
            300,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| e.to_string())?;
    let answer = send(ctx.http.put(url).body(body)).await?;
    if !answer.ok() {
        return Err(format!("part {number} got {}", answer.summary()));
    }
    answer
        .etag
        .map(|e| format!("\"{e}\""))
        .ok_or_else(|| format!("part {number}: no ETag in the answer"))
}

async fn abort(ctx: &Ctx<'_>, key: &str, id: &str) -> Result<(), String> {
    ctx.sdk
        .abort_multipart_upload()
        .bucket(ctx.bucket())
        .key(key)
        .upload_id(id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("abort: {}", sdk_error(&e)))
}
