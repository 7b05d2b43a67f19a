//! Uploading in `proxy` mode: the file is streamed to the broker itself
//! (`PUT /v1/uploads/{id}/content` with the bearer token), which passes it
//! on to the store and answers with the committed upload.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use futures::TryStreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Method, Url};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::http::{Broker, Created};
use super::progress::bytes_bar;

const CHUNK: usize = 1 << 20;

pub async fn send(
    broker: &Broker,
    path: &Path,
    size: u64,
    content_type: &str,
    created: &Created,
) -> Result<Value> {
    let url = Url::parse(&created.grant.url).context("the broker granted an invalid URL")?;
    let file = tokio::fs::File::open(path)
        .await
        .context("opening the file")?;
    let bar = bytes_bar(Some(size), &super::upload::label("uploading", path));
    let progress = bar.clone();
    let stream = ReaderStream::with_capacity(file.take(size), CHUNK)
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
    let req = broker
        .authorized(Method::PUT, url)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, size)
        .body(Body::wrap_stream(stream));
    let row = broker.send_json(req).await;
    bar.finish_and_clear();
    row.map_err(|e| anyhow!(e).context("streaming the file through the broker"))
}
