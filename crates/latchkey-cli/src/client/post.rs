//! Uploading one file in `post` mode: the same multipart/form-data request a
//! browser form sends, every field the grant lists, then the file (S3 ignores
//! fields after the file, so it must come last). The file is streamed, so
//! memory stays flat whatever its size.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use reqwest::multipart::{Form, Part};
use reqwest::{Body, Client, Url};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::http::Created;
use super::problem::{StoreError, redact_url};
use super::progress::bytes_bar;

const CHUNK: usize = 1 << 20;

pub async fn post_to_store(http: &Client, path: &Path, size: u64, created: &Created) -> Result<()> {
    let grant = &created.grant;
    if !grant.method.eq_ignore_ascii_case("POST") {
        bail!(
            "the broker granted a {} upload where a POST form was asked for",
            grant.method
        );
    }
    if grant.fields.is_empty() {
        bail!("the broker granted a POST form without fields");
    }
    let url = Url::parse(&grant.url).with_context(|| {
        format!(
            "the broker granted an invalid URL {}",
            redact_url(&grant.url)
        )
    })?;

    let mut form = Form::new();
    for (name, value) in &grant.fields {
        form = form.text(name.clone(), value.clone());
    }
    let file = tokio::fs::File::open(path)
        .await
        .context("opening the file")?;
    // `take` keeps the file at the declared length even if it grows after
    // hashing; the policy's content-length-range refuses any other length.
    let reader = file.take(size);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let bar = bytes_bar(Some(size), &format!("uploading {name}"));
    let progress = bar.clone();
    let stream = ReaderStream::with_capacity(reader, CHUNK)
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
    // No file name on the part: the key is fixed by the grant, and a name
    // outside ASCII would be encoded in ways not every store parses.
    let mut part = Part::stream_with_length(Body::wrap_stream(stream), size);
    if let Some(ct) = grant
        .fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v)
    {
        // Only the `Content-Type` field counts for the store; the part's own
        // type is what a browser would send, and harmless.
        part = part.mime_str(ct).context("the grant's content type")?;
    }
    form = form.part("file", part);

    let shown = redact_url(url.as_str());
    let result = http.post(url.clone()).multipart(form).send().await;
    bar.finish_and_clear();
    let resp = result
        .map_err(|e| anyhow!(e.without_url()))
        .with_context(|| format!("POST {shown}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(StoreError::from_response("POST", &url, status, &body).into());
    }
    Ok(())
}
