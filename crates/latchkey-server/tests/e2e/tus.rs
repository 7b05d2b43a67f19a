//! tus 1.0 at `/tus/`, spoken with raw HTTP: every protocol rule the
//! endpoint answers (statuses and headers), resuming, termination,
//! expiration, checksums and the write lock. tus-js-client itself runs in
//! `crates/latchkey-cli/tests/tus_js.rs`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use sha2::Digest;

use crate::common::{TestApp, spawn_app, spawn_app_with};
use crate::mode_multipart::noise;

const MIB: usize = 1024 * 1024;
const OFFSET_STREAM: &str = "application/offset+octet-stream";

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header (status {})", self.status))
            .to_str()
            .unwrap()
    }

    fn offset(&self) -> u64 {
        self.header("upload-offset").parse().unwrap()
    }
}

async fn send(req: RequestBuilder) -> Reply {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let reply = Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    };
    // Every answer, errors included, says which tus it speaks.
    assert_eq!(reply.header("tus-resumable"), "1.0.0", "status {status}");
    reply
}

fn tus(app: &TestApp, method: Method, url: &str, token: Option<&str>) -> RequestBuilder {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{url}", app.base)
    };
    let mut req = app
        .http
        .request(method, url)
        .header("tus-resumable", "1.0.0");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req
}

fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

async fn create(app: &TestApp, token: &str, length: usize, profile: &str) -> Reply {
    send(
        tus(app, Method::POST, "/tus/", Some(token))
            .header("upload-length", length.to_string())
            .header(
                "upload-metadata",
                metadata(&[
                    ("profile", profile),
                    ("filename", "data.bin"),
                    ("filetype", "application/octet-stream"),
                ]),
            ),
    )
    .await
}

async fn patch(app: &TestApp, token: &str, url: &str, offset: u64, body: Vec<u8>) -> Reply {
    send(
        tus(app, Method::PATCH, url, Some(token))
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", offset.to_string())
            .body(body),
    )
    .await
}

async fn head(app: &TestApp, token: &str, url: &str) -> Reply {
    send(tus(app, Method::HEAD, url, Some(token))).await
}

fn id_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

async fn row(app: &TestApp, token: &str, url: &str) -> Value {
    app.call(
        Method::GET,
        &format!("/v1/uploads/{}", id_of(url)),
        Some(token),
        None,
    )
    .await
    .body
}

async fn read_back(app: &TestApp, token: &str, url: &str) -> Vec<u8> {
    let dl = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{}/download", id_of(url)),
            Some(token),
            None,
        )
        .await;
    assert_eq!(dl.status, 200, "{}", dl.text);
    let res = app
        .http
        .get(dl.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn options_says_what_the_server_supports_and_cors_exposes_tus_headers() {
    let app = spawn_app().await;
    let res = send(
        app.http
            .request(Method::OPTIONS, format!("{}/tus/", app.base)),
    )
    .await;
    assert!(res.status == 204 || res.status == 200, "{}", res.status);
    assert_eq!(res.header("tus-version"), "1.0.0");
    let ext: Vec<&str> = res.header("tus-extension").split(',').collect();
    for want in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(ext.contains(&want), "{ext:?} lacks {want}");
    }
    // The `file` profile's 5 GiB is the largest.
    assert_eq!(res.header("tus-max-size"), (5u64 << 30).to_string());
    assert_eq!(res.header("tus-checksum-algorithm"), "sha1,sha256");

    // A browser's preflight is still answered as CORS.
    let pre = app
        .http
        .request(Method::OPTIONS, format!("{}/tus/abc", app.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "tus-resumable,upload-offset,upload-checksum,content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success());
    let allowed = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "tus-resumable",
        "upload-offset",
        "upload-checksum",
        "upload-length",
        "upload-metadata",
    ] {
        assert!(allowed.contains(h), "{allowed} lacks {h}");
    }
    // And a browser may read the tus headers of a response.
    let token = app.token("alice");
    let res = send(
        tus(&app, Method::POST, "/tus/", Some(&token))
            .header("origin", "https://app.example")
            .header("upload-length", "10")
            .header("upload-metadata", metadata(&[("profile", "file")])),
    )
    .await;
    assert_eq!(res.status, 201);
    let exposed = res
        .header("access-control-expose-headers")
        .to_ascii_lowercase();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "tus-resumable",
    ] {
        assert!(exposed.contains(h), "{exposed} lacks {h}");
    }
}

/// Three parts (5 + 5 + 2 MiB) sent in 3 MiB PATCHes that straddle the
/// part boundaries, with HEADs in between; the result is committed with
/// the same bytes.
#[tokio::test]
async fn an_upload_in_patches_commits_with_identical_bytes() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let data = noise(12 * MIB + 123, 7);
    let created = create(&app, &token, data.len(), "file").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let url = created.header("location").to_owned();
    assert!(
        url.starts_with(&format!("{}/tus/", app.base)),
        "{url} is not absolute under the public URL"
    );
    assert_eq!(created.offset(), 0);
    let expires = created.header("upload-expires").to_owned();
    assert!(expires.ends_with(" GMT"), "{expires}");

    let first = head(&app, &token, &url).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.offset(), 0);
    assert_eq!(first.header("upload-length"), data.len().to_string());
    assert_eq!(first.header("cache-control"), "no-store");
    assert_eq!(first.header("upload-expires"), expires);
    let meta = first.header("upload-metadata");
    assert!(
        meta.contains(&format!("filename {}", STANDARD.encode("data.bin"))),
        "{meta}"
    );

    let row0 = row(&app, &token, &url).await;
    assert_eq!(row0["mode"], "tus");
    assert_eq!(row0["status"], "pending");
    assert_eq!(row0["size"], data.len());

    let mut offset = 0u64;
    for chunk in data.chunks(3 * MIB) {
        let res = patch(&app, &token, &url, offset, chunk.to_vec()).await;
        assert_eq!(res.status, 204, "{:?}", res.body);
        offset += chunk.len() as u64;
        assert_eq!(res.offset(), offset);
        if offset < data.len() as u64 {
            assert_eq!(head(&app, &token, &url).await.offset(), offset);
            assert_eq!(res.header("upload-expires"), expires);
        }
    }
    let done = row(&app, &token, &url).await;
    assert_eq!(done["status"], "committed", "{done}");
    assert_eq!(read_back(&app, &token, &url).await, data);
    // A finished upload reports its whole length.
    let after = head(&app, &token, &url).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.offset(), data.len() as u64);
}

#[tokio::test]
async fn creation_with_upload_and_empty_uploads_commit_at_once() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let data = noise(300_000, 3);
    let res = send(
        tus(&app, Method::POST, "/tus/", Some(&token))
            .header("upload-length", data.len().to_string())
            .header(
                "upload-metadata",
                metadata(&[("profile", "file"), ("filename", "a.bin")]),
            )
            .header("content-type", OFFSET_STREAM)
            .body(data.clone()),
    )
    .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.offset(), data.len() as u64);
    let url = res.header("location").to_owned();
    assert_eq!(row(&app, &token, &url).await["status"], "committed");
    assert_eq!(read_back(&app, &token, &url).await, data);

    // Part of the file with the creation, the rest in a PATCH.
    let res = send(
        tus(&app, Method::POST, "/tus/", Some(&token))
            .header("upload-length", data.len().to_string())
            .header("upload-metadata", metadata(&[("profile", "file")]))
            .header("content-type", OFFSET_STREAM)
            .body(data[..1000].to_vec()),
    )
    .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.offset(), 1000);
    let url = res.header("location").to_owned();
    let res = patch(&app, &token, &url, 1000, data[1000..].to_vec()).await;
    assert_eq!(res.status, 204);
    assert_eq!(read_back(&app, &token, &url).await, data);

    // tus clients send no PATCH for an empty file.
    let res = create(&app, &token, 0, "file").await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let url = res.header("location").to_owned();
    assert_eq!(row(&app, &token, &url).await["status"], "committed");
    assert!(read_back(&app, &token, &url).await.is_empty());
}

#[tokio::test]
async fn protocol_violations_get_the_statuses_tus_names() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let created = create(&app, &token, 1000, "file").await;
    let url = created.header("location").to_owned();

    // No or another Tus-Resumable: 412, naming the version spoken.
    for version in [None, Some("0.2.2")] {
        let mut req = app.http.head(&url).bearer_auth(&token);
        if let Some(v) = version {
            req = req.header("tus-resumable", v);
        }
        let res = send(req).await;
        assert_eq!(res.status, 412);
        assert_eq!(res.header("tus-version"), "1.0.0");
    }
    // No token: 401, still a tus answer.
    let res = send(tus(&app, Method::HEAD, &url, None)).await;
    assert_eq!(res.status, 401);

    // PATCH needs application/offset+octet-stream.
    let res = send(
        tus(&app, Method::PATCH, &url, Some(&token))
            .header("content-type", "application/octet-stream")
            .header("upload-offset", "0")
            .body(vec![1u8; 10]),
    )
    .await;
    assert_eq!(res.status, 415);
    // …and Upload-Offset.
    let res = send(
        tus(&app, Method::PATCH, &url, Some(&token))
            .header("content-type", OFFSET_STREAM)
            .body(vec![1u8; 10]),
    )
    .await;
    assert_eq!(res.status, 400);
    // The wrong offset: 409.
    let res = patch(&app, &token, &url, 5, vec![1u8; 10]).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.body["code"], "offset_mismatch");
    // Past the upload's length: 413, and nothing counted.
    let res = patch(&app, &token, &url, 0, vec![1u8; 1001]).await;
    assert_eq!(res.status, 413);
    assert_eq!(head(&app, &token, &url).await.offset(), 0);

    // Checksums: sha1 and sha256 accepted, a mismatch 460 (body
    // discarded), another algorithm 400.
    let body = vec![7u8; 100];
    let sha1 = STANDARD.encode(sha1::Sha1::digest(&body));
    let res = send(
        tus(&app, Method::PATCH, &url, Some(&token))
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "0")
            .header("upload-checksum", format!("sha1 {sha1}"))
            .body(body.clone()),
    )
    .await;
    assert_eq!(res.status, 204, "{:?}", res.body);
    assert_eq!(res.offset(), 100);
    let wrong = STANDARD.encode(sha2::Sha256::digest(b"something else"));
    let res = send(
        tus(&app, Method::PATCH, &url, Some(&token))
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "100")
            .header("upload-checksum", format!("sha256 {wrong}"))
            .body(body.clone()),
    )
    .await;
    assert_eq!(res.status, 460);
    assert_eq!(res.body["code"], "checksum_mismatch");
    assert_eq!(head(&app, &token, &url).await.offset(), 100);
    let right = STANDARD.encode(sha2::Sha256::digest(&body));
    let res = send(
        tus(&app, Method::PATCH, &url, Some(&token))
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "100")
            .header("upload-checksum", format!("sha256 {right}"))
            .body(body.clone()),
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(res.offset(), 200);
    let res = send(
        tus(&app, Method::PATCH, &url, Some(&token))
            .header("content-type", OFFSET_STREAM)
            .header("upload-offset", "200")
            .header("upload-checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")
            .body(body.clone()),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.body["code"], "unsupported_checksum_algorithm");

    // Unknown uploads and other users' uploads: 404.
    let res = head(&app, &token, "/tus/0190b6a1c0de7000800000000000beef").await;
    assert_eq!(res.status, 404);
    let res = head(&app, &token, "/tus/not-an-id").await;
    assert_eq!(res.status, 404);
    let bob = app.token("bob");
    assert_eq!(head(&app, &bob, &url).await.status, 404);
    assert_eq!(patch(&app, &bob, &url, 200, vec![1]).await.status, 404);
    assert_eq!(
        send(tus(&app, Method::DELETE, &url, Some(&bob)))
            .await
            .status,
        404
    );

    // Creation: Upload-Length is required, and within the profile (413).
    let res = send(
        tus(&app, Method::POST, "/tus/", Some(&token))
            .header("upload-metadata", metadata(&[("profile", "file")])),
    )
    .await;
    assert_eq!(res.status, 400);
    let res = send(
        tus(&app, Method::POST, "/tus/", Some(&token))
            .header("upload-length", (60 * MIB).to_string())
            .header(
                "upload-metadata",
                metadata(&[("profile", "photo"), ("filetype", "image/jpeg")]),
            ),
    )
    .await;
    assert_eq!(res.status, 413, "{:?}", res.body);
    let res = create(&app, &token, 10, "nope").await;
    assert_eq!(res.body["code"], "unknown_profile");

    // tus uploads are made here, not at /v1/uploads.
    let res = app
        .create(
            &token,
            serde_json::json!({
                "profile": "file", "filename": "a", "content_type": "text/plain",
                "size": 3, "mode": "tus"
            }),
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.body["code"], "mode_not_supported");
}

#[tokio::test]
async fn termination_cancels_the_upload() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let data = noise(6 * MIB, 11);
    let url = create(&app, &token, data.len(), "file")
        .await
        .header("location")
        .to_owned();
    let res = patch(&app, &token, &url, 0, data[..5 * MIB + 10].to_vec()).await;
    assert_eq!(res.status, 204);
    let res = send(tus(&app, Method::DELETE, &url, Some(&token))).await;
    assert_eq!(res.status, 204);
    assert_eq!(row(&app, &token, &url).await["status"], "aborted");
    assert_eq!(head(&app, &token, &url).await.status, 404);
    assert_eq!(
        patch(&app, &token, &url, 5 * MIB as u64 + 10, vec![1])
            .await
            .status,
        404
    );
    assert_eq!(
        send(tus(&app, Method::DELETE, &url, Some(&token)))
            .await
            .status,
        404
    );
    // Nothing is left buffered either.
    let dir = app.data_dir.join("tus").join(id_of(&url));
    assert!(!dir.exists(), "{} remains", dir.display());
}

/// What another broker instance sees: the store's parts, not this
/// instance's buffer. Simulated by removing the buffer; the client then
/// resends from the part boundary and the upload completes intact.
#[tokio::test]
async fn a_lost_buffer_resumes_from_what_the_store_holds() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let data = noise(7 * MIB, 5);
    let url = create(&app, &token, data.len(), "file")
        .await
        .header("location")
        .to_owned();
    let res = patch(&app, &token, &url, 0, data[..6 * MIB].to_vec()).await;
    assert_eq!(res.offset(), 6 * MIB as u64);
    std::fs::remove_dir_all(app.data_dir.join("tus").join(id_of(&url))).unwrap();
    let at = head(&app, &token, &url).await.offset();
    assert_eq!(at, 5 * MIB as u64);
    let res = patch(&app, &token, &url, at, data[at as usize..].to_vec()).await;
    assert_eq!(res.status, 204);
    assert_eq!(row(&app, &token, &url).await["status"], "committed");
    assert_eq!(read_back(&app, &token, &url).await, data);
}

/// While one PATCH streams, a second gets 423; when the first client
/// goes away, the lock goes with it and the upload resumes.
#[tokio::test]
async fn one_writer_at_a_time_and_a_dead_one_lets_go() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let data = noise(2 * MIB, 9);
    let url = create(&app, &token, data.len(), "file")
        .await
        .header("location")
        .to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let slow = tus(&app, Method::PATCH, &url, Some(&token))
        .header("content-type", OFFSET_STREAM)
        .header("upload-offset", "0")
        .body(body);
    let first = tokio::spawn(async move { slow.send().await });
    tx.send(Ok(data[..100_000].to_vec())).await.unwrap();
    // Wait (bounded) until the first PATCH is writing.
    let mut seen = 0;
    for _ in 0..200 {
        seen = head(&app, &token, &url).await.offset();
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen > 0, "the first PATCH never started writing");
    let second = patch(&app, &token, &url, seen, data[seen as usize..].to_vec()).await;
    assert_eq!(second.status, 423, "{:?}", second.body);
    assert_eq!(second.body["code"], "locked");

    // The first client dies mid-body.
    first.abort();
    drop(tx);
    let mut done = None;
    for _ in 0..200 {
        let at = head(&app, &token, &url).await.offset();
        let res = patch(&app, &token, &url, at, data[at as usize..].to_vec()).await;
        if res.status == 204 {
            done = Some(res);
            break;
        }
        assert!(
            res.status == 423 || res.status == 409,
            "{}: {:?}",
            res.status,
            res.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.expect("the lock was never released");
    assert_eq!(done.offset(), data.len() as u64);
    assert_eq!(read_back(&app, &token, &url).await, data);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn an_expired_upload_is_gone() {
    let app =
        spawn_app_with("[profiles.quick]\ngrant_ttl = \"1s\"\ncontent_types = [\"*/*\"]\n").await;
    let token = app.token("alice");
    let created = create(&app, &token, 10, "quick").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let url = created.header("location").to_owned();
    let created_row = row(&app, &token, &url).await;
    let expires = time::OffsetDateTime::parse(
        created_row["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let header = created.header("upload-expires");
    let parsed = time::PrimitiveDateTime::parse(
        header,
        time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .unwrap()
    .assume_utc();
    assert_eq!(parsed, expires);
    // HEAD reports the upload until its TTL runs out, then 410.
    let mut status = 0;
    for _ in 0..200 {
        status = head(&app, &token, &url).await.status;
        if status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 410);
    let res = patch(&app, &token, &url, 0, vec![1; 10]).await;
    assert_eq!(res.status, 410);
    assert_eq!(res.body["code"], "expired");
}

/// tus-js-client (npm, run with Node) uploads in 1 MiB chunks, is aborted
/// past 40%, resumes from the upload URL and finishes: the upload is
/// committed with identical bytes. `scripts/test` runs `npm ci` in
/// `e2e-js/` first; without it this fails saying so.
#[tokio::test]
async fn tus_js_client_resumes_after_an_abort_and_commits() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e-js");
    assert!(
        js.join("node_modules/tus-js-client").is_dir(),
        "tus-js-client is not installed: run `npm ci` in {} (scripts/test does)",
        js.display()
    );
    let app = spawn_app().await;
    let token = app.token("alice");
    let data = noise(12 * MIB + 4321, 21);
    let file = app.data_dir.parent().unwrap().join("tus-js-input.bin");
    std::fs::write(&file, &data).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(js.join("tus-upload.mjs"))
        .arg(format!("{}/tus/", app.base))
        .arg(&file)
        .arg("file")
        .arg("application/octet-stream")
        .env("LATCHKEY_TOKEN", &token)
        .current_dir(&js)
        .output()
        .await
        .expect("node must be installed (scripts/test checks)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tus-js-client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    let url = report["url"].as_str().unwrap();
    let resumed_from = report["resumedFrom"].as_u64().unwrap();
    // It really stopped part-way and resumed from what the server kept.
    assert!(
        resumed_from > 0 && resumed_from < data.len() as u64,
        "{report}"
    );
    let done = row(&app, &token, url).await;
    assert_eq!(done["status"], "committed", "{done}");
    assert_eq!(done["mode"], "tus");
    assert_eq!(done["filename"], "tus-js-input.bin");
    assert_eq!(read_back(&app, &token, url).await, data);
}
