//! Uploading one file in `put` mode: hash it, ask the broker for a grant, PUT
//! the bytes straight to the store with exactly the signed headers, then ask
//! the broker to commit.

use latchkey_domain::Mode;
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Body, Client, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::http::{Broker, CreateUpload, Created};
use super::problem::{StoreError, redact_url};
use super::progress::bytes_bar;

const CHUNK: usize = 1 << 20;

/// What to declare for one file; the content type and metadata are already
/// resolved by the caller.
pub struct Declared<'a> {
    pub profile: Option<&'a str>,
    pub content_type: &'a str,
    pub metadata: Option<&'a BTreeMap<String, String>>,
    pub mode: Mode,
    /// Parts sent at once (multipart).
    pub parallel: usize,
}

/// Uploads one file and returns the committed row. A photo profile's upload
/// is `processing` after `complete`: this waits for the pipeline to commit
/// (or reject) it.
pub async fn upload_file(broker: &Broker, path: &Path, declared: &Declared<'_>) -> Result<Value> {
    let mut row = send_file(broker, path, declared).await?;
    for _ in 0..3000 {
        if row["status"] != "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        row = broker.get(row["id"].as_str().unwrap_or_default()).await?;
    }
    match row["status"].as_str() {
        Some("rejected") => bail!(
            "the photo was rejected: {}",
            row["reason"].as_str().unwrap_or("no reason given")
        ),
        Some("processing") => bail!("the photo is still being processed; see `latchkey ls`"),
        _ => Ok(row),
    }
}

async fn send_file(broker: &Broker, path: &Path, declared: &Declared<'_>) -> Result<Value> {
    let meta = tokio::fs::metadata(path)
        .await
        .context("reading file metadata")?;
    if !meta.is_file() {
        bail!("not a regular file");
    }
    let size = meta.len();
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("path has no file name"))?;

    let sha256 = hash_file(path, size).await?;
    let created = broker
        .create_upload(&CreateUpload {
            profile: declared.profile,
            filename: &filename,
            content_type: declared.content_type,
            size,
            sha256: &sha256,
            mode: declared.mode.as_str(),
            metadata: declared.metadata,
        })
        .await?;
    let raw = created;
    let created: Created =
        serde_json::from_value(raw.clone()).context("unexpected grant from the broker")?;

    let sent = match declared.mode {
        // A headers grant is a PUT too, only signed in headers, not the URL.
        Mode::Put | Mode::Headers => put_to_store(broker.http(), path, size, &created).await,
        Mode::Post => super::post::post_to_store(broker.http(), path, size, &created).await,
        Mode::Credentials => {
            super::credentials::put_with_credentials(
                broker.http(),
                path,
                size,
                &sha256,
                declared.content_type,
                &created,
            )
            .await
        }
        Mode::Multipart => {
            return match super::multipart::upload_new(broker, path, size, &raw, declared.parallel)
                .await
            {
                Ok(etags) => broker.complete_parts(&created.id, &etags).await,
                // Not aborted: the parts sent so far let it be resumed.
                Err(err) => Err(err.context(format!(
                    "resume with: latchkey upload --resume {} {}",
                    created.id,
                    path.display()
                ))),
            };
        }
        Mode::Proxy => {
            let sent =
                super::proxy::send(broker, path, size, declared.content_type, &created).await;
            if sent.is_err() {
                let _ = broker.delete(&created.id).await;
            }
            return sent;
        }
        other => Err(anyhow!("this client cannot upload in mode {other} yet")),
    };
    if let Err(err) = sent {
        // Abort so the row does not sit pending until the reconciler expires
        // it; if that fails too, the reconciler still will, so the first
        // error is the one worth reporting.
        let _ = broker.delete(&created.id).await;
        return Err(err);
    }
    broker.complete(&created.id).await
}

/// The lowercase hex SHA-256 of a file, read in 1 MiB chunks.
pub async fn hash_file(path: &Path, size: u64) -> Result<String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .context("opening the file")?;
    let bar = bytes_bar(Some(size), &label("hashing", path));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await.context("reading the file")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

pub(super) async fn put_to_store(
    http: &Client,
    path: &Path,
    size: u64,
    created: &Created,
) -> Result<()> {
    let grant = &created.grant;
    if !grant.method.eq_ignore_ascii_case("PUT") {
        bail!(
            "the broker granted a {} upload; this client only does PUT",
            grant.method
        );
    }
    let url = Url::parse(&grant.url).with_context(|| {
        format!(
            "the broker granted an invalid URL {}",
            redact_url(&grant.url)
        )
    })?;
    let headers = grant_headers(&grant.headers, size)?;

    let file = tokio::fs::File::open(path)
        .await
        .context("opening the file")?;
    // `take` keeps the body at the signed length even if the file grows
    // after hashing; if it shrank, the store sees a short body and refuses.
    let reader = file.take(size);
    let bar = bytes_bar(Some(size), &label("uploading", path));
    let progress = bar.clone();
    let stream = ReaderStream::with_capacity(reader, CHUNK)
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));

    let shown = redact_url(url.as_str());
    let result = http
        .put(url.clone())
        .headers(headers)
        .body(Body::wrap_stream(stream))
        .send()
        .await;
    bar.finish_and_clear();
    // without_url: reqwest's errors quote the full URL, signature included.
    let resp = result
        .map_err(|e| anyhow!(e.without_url()))
        .with_context(|| format!("PUT {shown}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(StoreError::from_response("PUT", &url, status, &body).into());
    }
    Ok(())
}

/// The grant's headers, sent exactly as signed. A streamed body has no
/// length of its own, so `content-length` must come from here; it is added
/// when the grant left it out and checked against the file when present.
fn grant_headers(granted: &BTreeMap<String, String>, size: u64) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in granted {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("the broker granted an invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("the broker granted an invalid value for header {name}"))?;
        headers.insert(name, value);
    }
    match headers.get(CONTENT_LENGTH) {
        Some(v) if v.to_str().ok().and_then(|s| s.parse::<u64>().ok()) == Some(size) => {}
        Some(v) => bail!(
            "the grant is for {} bytes but the file has {size}",
            v.to_str().unwrap_or("?")
        ),
        None => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    Ok(headers)
}

pub(super) fn label(verb: &str, path: &Path) -> String {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    format!("{verb} {name}")
}

/// The content type for a file name, from its extension; the broker checks
/// it against the profile (and may sniff the bytes), so this is only the
/// declaration.
pub fn guess_content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "avif" => "image/avif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "json" => "application/json",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

/// Parses one `--metadata key=value`; the value may itself contain `=`.
pub fn parse_metadata(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {raw:?}"))?;
    if key.is_empty() {
        return Err(format!("empty metadata key in {raw:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Collects `--metadata` pairs; a key given twice is a mistake, not an
/// override, so it is refused.
pub fn metadata_map(pairs: &[(String, String)]) -> Result<Option<BTreeMap<String, String>>> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            bail!("metadata key {key:?} given more than once");
        }
    }
    Ok((!map.is_empty()).then_some(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        let cases = [
            ("a.jpg", "image/jpeg"),
            ("DIR/B.JPEG", "image/jpeg"),
            ("c.png", "image/png"),
            ("c.webp", "image/webp"),
            ("c.gif", "image/gif"),
            ("IMG_1.HEIC", "image/heic"),
            ("c.heif", "image/heif"),
            ("c.avif", "image/avif"),
            ("doc.pdf", "application/pdf"),
            ("notes.txt", "text/plain"),
            ("x.json", "application/json"),
            ("clip.mp4", "video/mp4"),
            ("clip.MOV", "video/quicktime"),
            ("drawing.svg", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
            (".jpg", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(guess_content_type(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn metadata_pairs_split_at_the_first_equals() {
        assert_eq!(
            parse_metadata("album=summer"),
            Ok(("album".into(), "summer".into()))
        );
        assert_eq!(parse_metadata("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert_eq!(
            parse_metadata("empty="),
            Ok(("empty".into(), String::new()))
        );
        assert!(parse_metadata("novalue").is_err());
        assert!(parse_metadata("=v").is_err());
    }

    #[test]
    fn metadata_keys_must_be_unique() {
        assert_eq!(metadata_map(&[]).unwrap(), None);
        let pairs = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        assert_eq!(metadata_map(&pairs).unwrap().unwrap().len(), 2);
        let dup = [
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(metadata_map(&dup).is_err());
    }

    #[test]
    fn grant_headers_are_kept_and_length_checked() {
        let mut granted = BTreeMap::new();
        granted.insert("content-type".to_owned(), "image/jpeg".to_owned());
        granted.insert(
            "x-amz-checksum-sha256".to_owned(),
            "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=".to_owned(),
        );
        granted.insert("if-none-match".to_owned(), "*".to_owned());
        let headers = grant_headers(&granted, 7).unwrap();
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(headers["if-none-match"], "*");
        assert_eq!(headers["content-length"], "7");
        granted.insert("content-length".to_owned(), "7".to_owned());
        assert_eq!(
            grant_headers(&granted, 7)
                .unwrap()
                .get_all("content-length")
                .iter()
                .count(),
            1
        );
        assert!(grant_headers(&granted, 8).is_err());
    }

    #[tokio::test]
    async fn hashes_files_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        // Spans several chunks and ends mid-chunk.
        let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let want = hex::encode(Sha256::digest(&data));
        assert_eq!(hash_file(&path, data.len() as u64).await.unwrap(), want);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            hash_file(&empty, 0).await.unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
