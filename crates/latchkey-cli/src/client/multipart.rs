//! Uploading in `multipart` mode: parts go straight to the store in
//! parallel, each read from disk as a stream (memory stays flat whatever the
//! file size), with part URLs asked for in batches; then the broker checks
//! the part list and commits. `--resume` asks the broker which parts the
//! store already holds and sends only the others.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Body, Client, Url};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::http::Broker;
use super::problem::{StoreError, redact_url};
use super::progress::bytes_bar;

/// Part URLs asked for at once.
const BATCH: usize = 64;
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
struct PartUrl {
    number: u32,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct MultipartGrant {
    part_size: u64,
    part_count: u32,
    #[serde(default)]
    parts: Vec<PartUrl>,
}

#[derive(Debug, Deserialize)]
struct StoredPart {
    number: u32,
    size: u64,
    etag: String,
}

#[derive(Debug, Deserialize)]
struct StoredParts {
    part_size: u64,
    part_count: u32,
    parts: Vec<StoredPart>,
}

#[derive(Debug, Deserialize)]
struct PartUrls {
    parts: Vec<PartUrl>,
}

/// The layout of an upload and the parts already in the store.
struct Plan {
    id: String,
    size: u64,
    part_size: u64,
    part_count: u32,
    /// Part URLs already known (the grant's first batch).
    urls: BTreeMap<u32, PartUrl>,
    /// ETags of parts already in the store.
    done: BTreeMap<u32, String>,
}

impl Plan {
    fn part_len(&self, number: u32) -> u64 {
        if number < self.part_count {
            self.part_size
        } else {
            self.size - self.part_size * u64::from(self.part_count - 1)
        }
    }
}

/// Sends every part of a new multipart upload (its 201 answer is `created`).
/// Returns the ETags to complete with.
pub async fn upload_new(
    broker: &Broker,
    path: &Path,
    size: u64,
    created: &Value,
    parallel: usize,
) -> Result<Vec<(u32, String)>> {
    let id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the broker's answer has no id"))?
        .to_owned();
    let grant: MultipartGrant = serde_json::from_value(created["grant"]["multipart"].clone())
        .context("the broker did not grant a multipart upload")?;
    let plan = Plan {
        id,
        size,
        part_size: grant.part_size,
        part_count: grant.part_count,
        urls: grant.parts.into_iter().map(|p| (p.number, p)).collect(),
        done: BTreeMap::new(),
    };
    send_missing(broker, path, plan, parallel).await
}

/// `latchkey upload --resume ID FILE`: checks the file is the one the upload
/// declared, sends the parts the store lacks, and commits.
pub async fn resume(broker: &Broker, id: &str, path: &Path, parallel: usize) -> Result<Value> {
    let row = broker.get(id).await?;
    if row["mode"] != "multipart" {
        bail!("upload {id} is not a multipart upload; only those can be resumed");
    }
    if row["status"] != "pending" {
        bail!(
            "upload {id} is {}; there is nothing to resume",
            row["status"]
        );
    }
    let size = tokio::fs::metadata(path)
        .await
        .context("reading file metadata")?
        .len();
    if row["size"].as_u64() != Some(size) {
        bail!(
            "upload {id} is for {} bytes but the file has {size}",
            row["size"]
        );
    }
    if let Some(want) = row["sha256"].as_str() {
        let got = super::upload::hash_file(path, size).await?;
        if got != want {
            bail!("the file is not the one upload {id} was started with (another sha256)");
        }
    }
    let stored: StoredParts = serde_json::from_value(broker.stored_parts(id).await?)
        .context("unexpected part list from the broker")?;
    let mut plan = Plan {
        id: id.to_owned(),
        size,
        part_size: stored.part_size,
        part_count: stored.part_count,
        urls: BTreeMap::new(),
        done: BTreeMap::new(),
    };
    for p in stored.parts {
        if (1..=plan.part_count).contains(&p.number) && p.size == plan.part_len(p.number) {
            plan.done.insert(p.number, p.etag);
        }
    }
    let etags = send_missing(broker, path, plan, parallel).await?;
    broker.complete_parts(id, &etags).await
}

async fn send_missing(
    broker: &Broker,
    path: &Path,
    mut plan: Plan,
    parallel: usize,
) -> Result<Vec<(u32, String)>> {
    let missing: Vec<u32> = (1..=plan.part_count)
        .filter(|n| !plan.done.contains_key(n))
        .collect();
    let remaining: u64 = missing.iter().map(|&n| plan.part_len(n)).sum();
    let bar = bytes_bar(Some(remaining), &super::upload::label("uploading", path));
    for batch in missing.chunks(BATCH) {
        let unsigned: Vec<u32> = batch
            .iter()
            .copied()
            .filter(|n| !plan.urls.contains_key(n))
            .collect();
        if !unsigned.is_empty() {
            let urls: PartUrls =
                serde_json::from_value(broker.sign_parts(&plan.id, &unsigned).await?)
                    .context("unexpected part URLs from the broker")?;
            plan.urls
                .extend(urls.parts.into_iter().map(|p| (p.number, p)));
        }
        let jobs = batch.iter().map(|&n| {
            let part = plan
                .urls
                .get(&n)
                .ok_or_else(|| anyhow!("the broker gave no URL for part {n}"));
            let len = plan.part_len(n);
            let offset = plan.part_size * u64::from(n - 1);
            let (http, bar) = (broker.http(), bar.clone());
            async move {
                let etag = put_part(http, path, offset, len, part?, &bar)
                    .await
                    .with_context(|| format!("part {n}"))?;
                Ok::<_, anyhow::Error>((n, etag))
            }
        });
        let sent: Vec<(u32, String)> = futures::stream::iter(jobs)
            .buffer_unordered(parallel.max(1))
            .try_collect()
            .await?;
        plan.done.extend(sent);
        for n in batch {
            plan.urls.remove(n);
        }
    }
    bar.finish_and_clear();
    Ok(plan.done.into_iter().collect())
}

/// PUTs `len` bytes of the file from `offset`, streamed in small chunks.
async fn put_part(
    http: &Client,
    path: &Path,
    offset: u64,
    len: u64,
    part: &PartUrl,
    bar: &ProgressBar,
) -> Result<String> {
    let url = Url::parse(&part.url).with_context(|| {
        format!(
            "the broker granted an invalid URL {}",
            redact_url(&part.url)
        )
    })?;
    let mut headers = HeaderMap::new();
    for (name, value) in &part.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("invalid header name {name:?}"))?,
            HeaderValue::from_str(value).with_context(|| format!("invalid value for {name}"))?,
        );
    }
    match headers.get(CONTENT_LENGTH) {
        Some(v) if v.to_str().ok().and_then(|s| s.parse().ok()) == Some(len) => {}
        Some(_) => bail!("the broker signed another length for this part"),
        None => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    let mut file = tokio::fs::File::open(path)
        .await
        .context("opening the file")?;
    file.seek(SeekFrom::Start(offset))
        .await
        .context("seeking in the file")?;
    let progress = bar.clone();
    let stream = ReaderStream::with_capacity(file.take(len), CHUNK)
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
    let shown = redact_url(url.as_str());
    let resp = http
        .put(url.clone())
        .headers(headers)
        .body(Body::wrap_stream(stream))
        .send()
        .await
        .map_err(|e| anyhow!(e.without_url()))
        .with_context(|| format!("PUT {shown}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(StoreError::from_response("PUT", &url, status, &body).into());
    }
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.trim_matches('"').to_owned())
        .ok_or_else(|| anyhow!("the store answered the part without an ETag"))
}
