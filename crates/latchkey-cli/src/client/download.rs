//! Fetching an object through a presigned GET URL into a file. The bytes go
//! to a temporary file beside the destination and are renamed into place only
//! when complete (and verified, when the checksum is known), so a failed or
//! interrupted download never leaves a truncated file under the real name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use reqwest::{Client, Url};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::problem::{StoreError, redact_url};
use super::progress::bytes_bar;

/// Where the bytes go.
pub enum Sink<'a> {
    Stdout,
    File { path: &'a Path, force: bool },
}

/// Streams `url` into `sink` and returns the number of bytes written. When
/// `expect_sha256` is given, a mismatch fails the download and nothing is
/// left behind.
pub async fn download(
    http: &Client,
    url: &str,
    sink: Sink<'_>,
    expect_sha256: Option<&str>,
) -> Result<u64> {
    let url = Url::parse(url).with_context(|| {
        format!(
            "the broker gave an invalid download URL {}",
            redact_url(url)
        )
    })?;
    let shown = redact_url(url.as_str());
    // No Authorization header: the URL is the credential, and the store must
    // never see the broker token.
    let resp = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| anyhow!(e.without_url()))
        .with_context(|| format!("GET {shown}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(StoreError::from_response("GET", &url, status, &body).into());
    }
    let len = resp.content_length();
    let body = resp.bytes_stream();

    match sink {
        Sink::Stdout => {
            let mut out = tokio::io::stdout();
            let written = copy(body, &mut out, None, expect_sha256, &shown).await?;
            out.flush().await.context("writing to stdout")?;
            Ok(written)
        }
        Sink::File { path, force } => {
            let temp = temp_path(path)?;
            let result = async {
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .await
                    .with_context(|| format!("creating {}", temp.display()))?;
                let written = copy(body, &mut file, len, expect_sha256, &shown).await?;
                file.sync_all()
                    .await
                    .with_context(|| format!("writing {}", temp.display()))?;
                drop(file);
                // Checked again because the download may have taken a while.
                if !force && tokio::fs::symlink_metadata(path).await.is_ok() {
                    bail!(
                        "{} already exists (use --force to overwrite)",
                        path.display()
                    );
                }
                tokio::fs::rename(&temp, path)
                    .await
                    .with_context(|| format!("moving the download to {}", path.display()))?;
                Ok(written)
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            result
        }
    }
}

async fn copy<S, B, W>(
    mut body: S,
    out: &mut W,
    len: Option<u64>,
    expect_sha256: Option<&str>,
    shown: &str,
) -> Result<u64>
where
    S: futures::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
    W: tokio::io::AsyncWrite + Unpin,
{
    let bar = bytes_bar(len, "downloading");
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| anyhow!(e.without_url()))
            .with_context(|| format!("reading GET {shown}"))?;
        let chunk = chunk.as_ref();
        hasher.update(chunk);
        out.write_all(chunk).await.context("writing the download")?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(len) = len
        && written != len
    {
        bail!("GET {shown}: expected {len} bytes, got {written}");
    }
    if let Some(want) = expect_sha256 {
        let got = hex::encode(hasher.finalize());
        if !got.eq_ignore_ascii_case(want) {
            bail!("GET {shown}: sha256 mismatch (expected {want}, got {got})");
        }
    }
    Ok(written)
}

/// `.NAME.latchkey-PID.part` in the destination's directory: the same file
/// system, so the final rename is atomic, and hidden, so a half-written file
/// is not mistaken for the real one.
fn temp_path(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", dest.display()))?;
    let temp = format!(
        ".{}.latchkey-{}.part",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(dest.with_file_name(temp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_sit_beside_the_destination() {
        let temp = temp_path(Path::new("out/photo.jpg")).unwrap();
        assert_eq!(temp.parent(), Some(Path::new("out")));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(".photo.jpg.latchkey-") && name.ends_with(".part"),
            "{name}"
        );
        assert!(temp_path(Path::new("/")).is_err());
    }
}
