//! `latchkey store check`: find out what a configured S3 store really
//! enforces, by trying it, instead of trusting its documentation.
//!
//! Every probe sends the requests a grant holder would send (presigned PUTs,
//! POST forms, part uploads) and checks that the store refuses the ones it
//! should. The answer is the same [`Capabilities`] the broker uses to refuse
//! grant modes the store cannot honour, plus one row per probe saying what was
//! seen, so an operator can paste it into `latchkey.toml` or a bug report.
//!
//! All objects live under a fresh `.latchkey-probe/<random>/` prefix and are
//! removed afterwards, whatever the probes found. Bucket configuration is only
//! ever read, never changed.
//!
//! Layout: this file (target, entry point, cleanup), `report` (rows, table,
//! JSON), `http` (raw requests and answers), `objects` (PUT, checksum,
//! If-None-Match, POST, clock skew, expiry), `multipart`, `bucket` (CORS,
//! lifecycle, notifications), `sts`.

mod bucket;
mod http;
mod multipart;
mod objects;
mod report;
mod sts;

use latchkey_domain::Secret;
use latchkey_sigv4::{Credentials, Endpoint, Signer};

use crate::{Capabilities, S3Store, S3StoreConfig, StoreError};

pub use report::{ProbeReport, ProbeResult, ProbeRow};

/// The store to probe, as the broker reaches it.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// `scheme://host[:port]`, no path.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Where to send `AssumeRole`. Defaults to `https://sts.<region>.amazonaws.com/`
    /// for AWS endpoints and to the S3 endpoint itself otherwise (MinIO and
    /// Ceph RGW serve STS there).
    pub sts_endpoint: Option<String>,
    /// Without it the STS probe is skipped: the broker has no role to assume.
    pub sts_role_arn: Option<String>,
}

/// Everything the probes share: clients, signer, URLs and the prefix.
pub(crate) struct Ctx<'a> {
    pub target: &'a ProbeTarget,
    pub http: reqwest::Client,
    pub sdk: aws_sdk_s3::Client,
    pub signer: Signer,
    pub endpoint: Endpoint,
    /// `.latchkey-probe/<random>/`, ending in `/`.
    pub prefix: String,
}

impl Ctx<'_> {
    /// A key under the probe prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn bucket(&self) -> &str {
        &self.target.bucket
    }
}

/// Runs every probe against `target`. `Err` only when the bucket cannot be
/// reached with the configured credentials at all; a probe that fails on its
/// own is reported as a row with [`ProbeResult::Error`].
///
/// Dropping the future part-way skips the cleanup: objects may then remain
/// under the report's prefix (`.latchkey-probe/`), which is safe to delete.
pub async fn probe(target: &ProbeTarget) -> Result<ProbeReport, StoreError> {
    let endpoint = Endpoint::new(
        &target.endpoint,
        &target.bucket,
        &target.region,
        target.path_style,
    )
    .map_err(|e| StoreError::Refused(e.to_string()))?;
    let store = S3Store::new(&S3StoreConfig {
        endpoint: target.endpoint.clone(),
        region: target.region.clone(),
        bucket: target.bucket.clone(),
        path_style: target.path_style,
        access_key_id: target.access_key_id.clone(),
        secret_access_key: target.secret_access_key.clone(),
        capabilities: Capabilities::FULL,
    });
    crate::ObjectStore::ping(&store).await?;

    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        // A probe must see the store's own answer, not a redirect's.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StoreError::Unavailable(e.without_url().to_string()))?;
    let creds = Credentials {
        access_key_id: target.access_key_id.clone(),
        secret_access_key: target.secret_access_key.clone(),
        session_token: None,
    };
    let ctx = Ctx {
        target,
        http,
        sdk: store.client().clone(),
        signer: Signer::new(creds, &target.region),
        endpoint,
        prefix: format!(".latchkey-probe/{}/", uuid::Uuid::new_v4().simple()),
    };

    let mut rows = Vec::with_capacity(12);
    rows.push(objects::signed_put(&ctx).await);
    rows.push(objects::checksum(&ctx).await);
    rows.push(objects::if_none_match(&ctx).await);
    rows.push(objects::post_object(&ctx).await);
    rows.push(multipart::multipart(&ctx).await);
    rows.push(bucket::cors(&ctx).await);
    rows.push(bucket::lifecycle(&ctx).await);
    rows.push(bucket::notifications(&ctx).await);
    rows.push(sts::assume_role(&ctx).await);
    rows.push(objects::clock_skew(&ctx).await);
    rows.push(objects::expiry(&ctx).await);
    if let Err(left) = cleanup(&ctx).await {
        rows.push(ProbeRow::error(report::CLEANUP, left));
    }
    Ok(ProbeReport::new(rows, ctx.prefix))
}

/// Aborts the probe's multipart uploads and deletes its objects, then lists
/// the prefix once more: `Err` says what is left, so the report can name it.
async fn cleanup(ctx: &Ctx<'_>) -> Result<(), String> {
    let mut problems = Vec::new();
    match ctx
        .sdk
        .list_multipart_uploads()
        .bucket(ctx.bucket())
        .prefix(&ctx.prefix)
        .send()
        .await
    {
        Ok(out) => {
            for up in out.uploads() {
                let (Some(key), Some(id)) = (up.key(), up.upload_id()) else {
                    continue;
                };
                let res = ctx
                    .sdk
                    .abort_multipart_upload()
                    .bucket(ctx.bucket())
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
                if let Err(e) = res {
                    problems.push(format!("abort {key}: {}", http::sdk_error(&e)));
                }
            }
        }
        // Not fatal: stores without ListMultipartUploads still got their
        // uploads aborted by the multipart probe itself.
        Err(e) => tracing::debug!(error = %http::sdk_error(&e), "listing probe uploads"),
    }
    for key in list_prefix(ctx).await? {
        let res = ctx
            .sdk
            .delete_object()
            .bucket(ctx.bucket())
            .key(&key)
            .send()
            .await;
        if let Err(e) = res {
            problems.push(format!("delete {key}: {}", http::sdk_error(&e)));
        }
    }
    let left = list_prefix(ctx).await?;
    if !left.is_empty() {
        problems.push(format!(
            "{} object(s) left under {}",
            left.len(),
            ctx.prefix
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Every key under the probe prefix (a handful; one page is plenty, but
/// follow continuation tokens anyway).
async fn list_prefix(ctx: &Ctx<'_>) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = ctx
            .sdk
            .list_objects_v2()
            .bucket(ctx.bucket())
            .prefix(&ctx.prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| format!("listing {}: {}", ctx.prefix, http::sdk_error(&e)))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(keys),
        }
    }
}
