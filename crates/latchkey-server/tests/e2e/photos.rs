//! The photo pipeline end to end (DESIGN §7): every file of
//! `../shared/testdata/` through grant → PUT → complete → processing, with
//! the outcome its README states. Served copies are checked with an
//! independent reader, `exiftool` (Debian's `libimage-exiftool-perl`,
//! installed by `scripts/test`), and decoded with the `image` crate.
//! Also: a profile keeping HEIC originals (served as `image/heic`, stripped,
//! decoded by libheif), and photo jobs outliving their broker (an
//! ingest-only instance, a restart, a worker that vanished mid-lease).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, media_worker_toml, spawn_app, spawn_app_with, testdata};

/// A request through the `photo` profile (`process = "image"`).
fn photo_request(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    let mut req = crate::common::photo_request(name, content_type, bytes);
    req["profile"] = json!("photo");
    req
}

/// What the README's table says must happen to each file.
enum Want {
    /// Accepted; the clean original is `w`×`h` and of this type.
    Accept(u32, u32, &'static str),
    /// Rejected with one of these reasons.
    Reject(&'static [&'static str]),
}

const FILES: [(&str, &str, Want); 12] = [
    (
        "iphone-12mp-gps-orient6.jpg",
        "image/jpeg",
        Want::Accept(3024, 4032, "image/jpeg"),
    ),
    (
        "small-gps.jpg",
        "image/jpeg",
        Want::Accept(640, 480, "image/jpeg"),
    ),
    (
        "small-gps-orient8.jpg",
        "image/jpeg",
        Want::Accept(640, 480, "image/jpeg"),
    ),
    (
        "photo.png",
        "image/png",
        Want::Accept(640, 480, "image/png"),
    ),
    (
        "photo.webp",
        "image/webp",
        Want::Accept(640, 480, "image/webp"),
    ),
    (
        "photo.heic",
        "image/heic",
        Want::Accept(640, 480, "image/jpeg"),
    ),
    ("anim.gif", "image/gif", Want::Accept(0, 0, "image/gif")),
    (
        "polyglot.jpg",
        "image/jpeg",
        Want::Accept(0, 0, "image/jpeg"),
    ),
    (
        "bomb-900mp.png",
        "image/png",
        Want::Reject(&["too_many_pixels"]),
    ),
    // Its EXIF segment claims more bytes than the file has, its frame
    // header 65500x65500: refused from the header either way.
    (
        "bomb-header-65500.jpg",
        "image/jpeg",
        Want::Reject(&["too_many_pixels", "decode_failed"]),
    ),
    (
        "truncated.jpg",
        "image/jpeg",
        Want::Reject(&["decode_failed"]),
    ),
    (
        "html-as-jpg.jpg",
        "image/jpeg",
        Want::Reject(&["not_an_image"]),
    ),
];

/// Uploads `name` through the presigned PUT and completes it; returns the
/// upload id and the `complete` answer.
async fn upload(app: &TestApp, token: &str, name: &str, ct: &str) -> (String, Value) {
    upload_bytes(app, token, name, ct, testdata(name)).await
}

/// [`upload`] of `bytes`, named `name`.
async fn upload_bytes(
    app: &TestApp,
    token: &str,
    name: &str,
    ct: &str,
    bytes: Vec<u8>,
) -> (String, Value) {
    let created = app.create(token, photo_request(name, ct, &bytes)).await;
    assert_eq!(created.status, 201, "{name}: {}", created.text);
    let c = &created.body;
    let url = c["grant"]["url"].as_str().unwrap();
    assert!(
        url.contains(".quarantine?"),
        "{name}: photos land in quarantine: {url}"
    );
    let put = app.put_grant(c, bytes, |_| {}).await;
    assert_eq!(put.status, 200, "{name}: {}", put.text);
    let id = c["id"].as_str().unwrap().to_owned();
    let done = app.complete(token, &id).await;
    assert_eq!(done.status, 200, "{name}: {}", done.text);
    (id, done.body)
}

/// Polls the row until the pipeline has settled it (bounded).
async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let row = app
            .call(Method::GET, &format!("/v1/uploads/{id}"), Some(token), None)
            .await;
        assert_eq!(row.status, 200, "{}", row.text);
        if row.body["status"] != "processing" {
            return row.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Say why: what the broker logged about this upload.
    let logs = String::from_utf8_lossy(&crate::common::logs().lock().unwrap()).to_string();
    let about: Vec<&str> = logs.lines().filter(|l| l.contains(id)).collect();
    panic!(
        "upload {id} is still processing; its log lines:\n{}",
        about.join("\n")
    );
}

async fn download(
    app: &TestApp,
    token: &str,
    id: &str,
    variant: Option<&str>,
) -> (Vec<u8>, String) {
    let path = match variant {
        Some(v) => format!("/v1/uploads/{id}/download?variant={v}"),
        None => format!("/v1/uploads/{id}/download"),
    };
    let dl = app.call(Method::GET, &path, Some(token), None).await;
    assert_eq!(dl.status, 200, "{path}: {}", dl.text);
    let got = app
        .http
        .get(dl.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let ct = got
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (got.bytes().await.unwrap().to_vec(), ct)
}

/// What exiftool finds in `bytes`, one JSON object of `Group:Tag` keys.
fn exiftool(bytes: &[u8]) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("exiftool")
        .args(["-j", "-a", "-G1", "-n"])
        .arg(&path)
        .output()
        .expect("exiftool (Debian libimage-exiftool-perl; scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter().next().unwrap()
}

/// No GPS, no EXIF thumbnail, no XMP, no IPTC, no EXIF at all.
fn assert_clean(what: &str, bytes: &[u8]) {
    let tags = exiftool(bytes);
    for key in tags.keys() {
        let group = key.split(':').next().unwrap_or("");
        assert!(
            !matches!(
                group,
                "GPS" | "IFD0" | "IFD1" | "ExifIFD" | "XMP" | "IPTC" | "Photoshop"
            ) && !group.starts_with("XMP")
                && !key.contains("Thumbnail")
                && !key.contains("GPS"),
            "{what}: exiftool still finds {key} = {}",
            tags[key]
        );
    }
}

fn pixel_size(tags: &serde_json::Map<String, Value>) -> (u64, u64) {
    let find = |tag: &str| {
        tags.iter()
            .find(|(k, _)| k.ends_with(tag) && !k.starts_with("Composite"))
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(0)
    };
    (find(":ImageWidth"), find(":ImageHeight"))
}

fn size_of(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

#[tokio::test]
async fn every_test_file_gets_the_outcome_its_readme_states() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let mut ids = Vec::new();
    for (name, ct, _) in &FILES {
        let (id, done) = upload(&app, &token, name, ct).await;
        assert_eq!(done["status"], "processing", "{name}: {done}");
        ids.push(id);
    }
    for ((name, _, want), id) in FILES.iter().zip(&ids) {
        let row = settled(&app, &token, id).await;
        match want {
            Want::Reject(codes) => {
                assert_eq!(row["status"], "rejected", "{name}: {row}");
                let reason = row["reason"].as_str().unwrap();
                assert!(codes.contains(&reason), "{name}: {reason}");
                // Completing again tells why, as a problem.
                let again = app.complete(&token, id).await;
                assert_eq!(again.body["code"], reason, "{name}: {}", again.text);
                let dl = app
                    .call(
                        Method::GET,
                        &format!("/v1/uploads/{id}/download"),
                        Some(&token),
                        None,
                    )
                    .await;
                assert_eq!(dl.status, 409, "{name}: nothing rejected is served");
            }
            Want::Accept(w, h, served_type) => {
                assert_eq!(row["status"], "committed", "{name}: {row}");
                assert!(
                    row["thumbhash"].as_str().is_some_and(|t| !t.is_empty()),
                    "{name}"
                );
                let (original, ct) = download(&app, &token, id, None).await;
                assert_eq!(ct, *served_type, "{name}");
                assert_clean(name, &original);
                if *w > 0 {
                    assert_eq!(size_of(&original), (*w, *h), "{name}: upright");
                    assert_eq!(
                        (row["width"].as_u64(), row["height"].as_u64()),
                        (Some(u64::from(*w)), Some(u64::from(*h))),
                        "{name}"
                    );
                    let tags = exiftool(&original);
                    assert_eq!(
                        pixel_size(&tags),
                        (u64::from(*w), u64::from(*h)),
                        "{name}: exiftool"
                    );
                }
                let variants = row["variants"].as_array().unwrap();
                let names: Vec<_> = variants
                    .iter()
                    .map(|v| v["name"].as_str().unwrap())
                    .collect();
                assert_eq!(names, ["thumb", "medium"], "{name}");
                for v in variants {
                    let vname = v["name"].as_str().unwrap();
                    let (bytes, ct) = download(&app, &token, id, Some(vname)).await;
                    assert_eq!(ct, "image/jpeg", "{name} {vname}");
                    assert_clean(&format!("{name} {vname}"), &bytes);
                    let (vw, vh) = size_of(&bytes);
                    assert_eq!(
                        (u64::from(vw), u64::from(vh)),
                        (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
                    );
                    let long = if vname == "thumb" { 256 } else { 1280 };
                    assert!(vw.max(vh) <= long, "{name} {vname}: {vw}x{vh}");
                    if *w > 0 {
                        // Same orientation as the original.
                        assert_eq!(vw > vh, w > h, "{name} {vname}");
                    }
                }
            }
        }
    }
    // The two README specifics that need the bytes.
    let id = &ids[1];
    let (served, _) = download(&app, &token, id, None).await;
    let before = image::load_from_memory(&testdata("small-gps.jpg")).unwrap();
    let after = image::load_from_memory(&served).unwrap();
    assert_eq!(
        before.as_bytes(),
        after.as_bytes(),
        "small-gps.jpg: stripped losslessly"
    );
    let id = &ids[7];
    let (served, _) = download(&app, &token, id, None).await;
    for payload in [&b"<?php"[..], b"PK\x03\x04"] {
        assert!(
            !served.windows(payload.len()).any(|w| w == payload),
            "polyglot payload served"
        );
    }
    assert!(served.ends_with(&[0xFF, 0xD9]));
    let (thumb, _) = download(&app, &token, &ids[0], Some("thumb")).await;
    assert_eq!(
        size_of(&thumb),
        (192, 256),
        "the iPhone photo's thumb is upright"
    );
    let unknown = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{}/download?variant=huge", ids[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["code"], "variant_not_found");
}

#[tokio::test]
async fn svg_is_never_a_photo() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("script.svg");
    // Declared as what it is: the profile does not allow the type.
    let svg = app
        .create(&token, photo_request("script.svg", "image/svg+xml", &bytes))
        .await;
    assert_eq!(svg.status, 400, "{}", svg.text);
    // Declared as a JPEG: the magic bytes give it away.
    let (id, _) = upload(&app, &token, "script.svg", "image/jpeg").await;
    let row = settled(&app, &token, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["reason"].as_str()),
        (Some("rejected"), Some("not_an_image"))
    );
    // A real image declared as another type is a type mismatch.
    let (id, _) = upload(&app, &token, "photo.png", "image/jpeg").await;
    let row = settled(&app, &token, &id).await;
    assert_eq!(row["reason"], "type_mismatch");
}

#[tokio::test]
async fn a_hostile_decode_fails_only_its_upload() {
    // The header check opened wide and the worker's address space capped:
    // the 900 MP bomb reaches its decoder, which must fail (out of its
    // memory), while other photos on the same broker go through.
    let app = spawn_app_with(&format!(
        "[media]\n{}\nmax_pixels = 1000000000\nmax_side = 40000\nmemory_limit = \"512MiB\"\n",
        media_worker_toml()
    ))
    .await;
    let token = app.token("alice");
    let (bomb, _) = upload(&app, &token, "bomb-900mp.png", "image/png").await;
    let (good, _) = upload(&app, &token, "small-gps.jpg", "image/jpeg").await;
    let row = settled(&app, &token, &bomb).await;
    assert_eq!(
        (row["status"].as_str(), row["reason"].as_str()),
        (Some("rejected"), Some("decode_failed"))
    );
    let row = settled(&app, &token, &good).await;
    assert_eq!(row["status"], "committed");
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    let (next, _) = upload(&app, &token, "photo.webp", "image/webp").await;
    assert_eq!(settled(&app, &token, &next).await["status"], "committed");
}

#[tokio::test]
async fn processed_photos_can_use_webp_variants_and_be_deleted() {
    let app = spawn_app_with(&format!(
        "[media]\n{}\nvariant_format = \"webp\"\n",
        media_worker_toml()
    ))
    .await;
    let token = app.token("bob");
    let (id, _) = upload(&app, &token, "small-gps-orient8.jpg", "image/jpeg").await;
    let row = settled(&app, &token, &id).await;
    assert_eq!(row["status"], "committed");
    let (thumb, ct) = download(&app, &token, &id, Some("thumb")).await;
    assert_eq!(ct, "image/webp");
    assert_eq!(size_of(&thumb), (256, 192));
    let del = app
        .call(
            Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(del.status, 200, "{}", del.text);
    assert_eq!(del.body["status"], "deleted");
    let _ = json!({});
}

#[tokio::test]
async fn a_profile_makes_exactly_its_own_variants() {
    let app = spawn_app_with(&format!(
        "[media]\n{}\n[profiles.avatar]\nprocess = \"image\"\ncontent_types = [\"image/jpeg\"]\nvariants = [{{ name = \"small\", size = 64, format = \"webp\" }}]\n",
        media_worker_toml()
    ))
    .await;
    let token = app.token("carol");
    let bytes = testdata("small-gps-orient8.jpg");
    let mut req = crate::common::photo_request("me.jpg", "image/jpeg", &bytes);
    req["profile"] = json!("avatar");
    let created = app.create(&token, req).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let put = app.put_grant(&created.body, bytes, |_| {}).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let done = app.complete(&token, &id).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let row = settled(&app, &token, &id).await;
    assert_eq!(row["status"], "committed", "{row}");
    let names: Vec<_> = row["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small"], "the profile's variants replace [media]'s");
    let (small, ct) = download(&app, &token, &id, Some("small")).await;
    assert_eq!(ct, "image/webp");
    assert_eq!(size_of(&small), (64, 48));
    let thumb = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}/download?variant=thumb"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(thumb.status, 404, "{}", thumb.text);
}

/// `photo.heic` with XMP (a title and GPS) added by exiftool, as the
/// `mime` item iPhones edited elsewhere come back with.
fn heic_with_xmp() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.heic"), dir.path().join("out.heic"));
    std::fs::write(&src, testdata("photo.heic")).unwrap();
    let out = std::process::Command::new("exiftool")
        .args([
            "-q",
            "-XMP-dc:Title=secret title",
            "-XMP:GPSLatitude=48.8584",
            "-XMP:GPSLongitude=2.2945",
            "-o",
        ])
        .arg(&dst)
        .arg(&src)
        .output()
        .expect("exiftool (Debian libimage-exiftool-perl; scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&dst).unwrap();
    assert!(
        exiftool(&bytes).keys().any(|k| k.starts_with("XMP")),
        "the fixture has XMP"
    );
    bytes
}

/// Width and height of a HEIF file as libheif decodes it (rotation
/// applied).
fn heif_size(bytes: &[u8]) -> (u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("x.heic"), dir.path().join("x.png"));
    std::fs::write(&src, bytes).unwrap();
    let out = std::process::Command::new("heif-convert")
        .arg("--quiet")
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("heif-convert (Debian libheif-examples)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    size_of(&std::fs::read(&dst).unwrap())
}

#[tokio::test]
async fn a_profile_can_keep_heic_originals_stripped() {
    let app = spawn_app_with(&format!(
        "[media]\n{}\n[profiles.photo]\nheif_original = \"keep\"\n",
        media_worker_toml()
    ))
    .await;
    let token = app.token("erin");
    let mut appended = testdata("photo.heic");
    appended.extend_from_slice(b"PK\x03\x04<?php system($_GET['c']); ?>");
    for (what, bytes) in [
        ("photo.heic", testdata("photo.heic")),
        ("photo.heic with XMP", heic_with_xmp()),
        ("photo.heic with a payload appended", appended),
    ] {
        let (id, _) = upload_bytes(&app, &token, "photo.heic", "image/heic", bytes.clone()).await;
        let row = settled(&app, &token, &id).await;
        assert_eq!(row["status"], "committed", "{what}: {row}");
        assert_eq!(
            (row["width"].as_u64(), row["height"].as_u64()),
            (Some(640), Some(480)),
            "{what}"
        );
        let (original, ct) = download(&app, &token, &id, None).await;
        assert_eq!(ct, "image/heic", "{what}: served as what it is");
        assert!(original.len() <= bytes.len(), "{what}");
        assert_clean(what, &original);
        let tags = exiftool(&original);
        assert_eq!(tags["File:FileType"], "HEIC", "{what}");
        assert_eq!(pixel_size(&tags), (640, 480), "{what}: exiftool");
        assert_eq!(
            heif_size(&original),
            (640, 480),
            "{what}: libheif decodes it"
        );
        for payload in [&b"<?php"[..], b"PK\x03\x04", b"secret title", b"iPhone"] {
            assert!(
                !original.windows(payload.len()).any(|w| w == payload),
                "{what}: {:?} served",
                String::from_utf8_lossy(payload)
            );
        }
        for v in row["variants"].as_array().unwrap() {
            let vname = v["name"].as_str().unwrap();
            let (bytes, ct) = download(&app, &token, &id, Some(vname)).await;
            assert_eq!(ct, "image/jpeg", "{what} {vname}");
            assert_clean(&format!("{what} {vname}"), &bytes);
            let (vw, vh) = size_of(&bytes);
            assert!(vw > vh, "{what} {vname}: {vw}x{vh}");
        }
    }
}

/// The row as the ledger has it.
async fn ledger_row(app: &TestApp, id: &str) -> latchkey_domain::Upload {
    let ledger = latchkey_ledger::connect(&app.ledger_url).await.unwrap();
    let id = latchkey_domain::UploadId::parse(id).unwrap();
    let row = ledger.get(id).await.unwrap().unwrap();
    ledger.close().await;
    row
}

#[tokio::test]
async fn photo_jobs_survive_a_restart_and_a_vanished_worker() {
    // An ingest-only instance: it takes photos in, processes none.
    let app = spawn_app_with(&format!("[media]\n{}\nworkers = 0\n", media_worker_toml())).await;
    let token = app.token("frank");
    let (first, done) = upload(&app, &token, "small-gps-orient8.jpg", "image/jpeg").await;
    assert_eq!(done["status"], "processing", "{done}");
    let (second, done) = upload(&app, &token, "photo.webp", "image/webp").await;
    assert_eq!(done["status"], "processing", "{done}");

    // A worker of some other instance claims one job, with a short lease,
    // and is never heard of again.
    let lease = Duration::from_secs(2);
    let claimed_at = time::OffsetDateTime::now_utc();
    let ledger = latchkey_ledger::connect(&app.ledger_url).await.unwrap();
    let jobs = ledger.claim_processing(claimed_at, lease, 1).await.unwrap();
    ledger.close().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let abandoned = jobs[0].upload.id.to_string();
    let waiting = if abandoned == first { &second } else { &first };
    assert!([&first, &second].contains(&&abandoned));
    for id in [&first, &second] {
        let row = app
            .call(
                Method::GET,
                &format!("/v1/uploads/{id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(row.body["status"], "processing", "{}", row.text);
    }

    // Shut down; a new instance with a worker takes over the same ledger
    // and store.
    let app = app
        .restart_with(&format!(
            "[media]\n{}\nworkers = 1\npoll = \"100ms\"\n",
            media_worker_toml()
        ))
        .await;
    let token = app.token("frank");
    for id in [waiting, &abandoned] {
        let row = settled(&app, &token, id).await;
        assert_eq!(row["status"], "committed", "{id}: {row}");
        let names: Vec<_> = row["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["thumb", "medium"], "{row}");
        for v in row["variants"].as_array().unwrap() {
            let (bytes, ct) = download(&app, &token, id, v["name"].as_str()).await;
            assert_eq!(ct, "image/jpeg");
            assert_eq!(
                size_of(&bytes),
                (
                    v["width"].as_u64().unwrap() as u32,
                    v["height"].as_u64().unwrap() as u32
                )
            );
        }
        let (original, _) = download(&app, &token, id, None).await;
        assert_eq!(size_of(&original), (640, 480), "{id}");
    }
    // The abandoned job waited out its lease: it was claimed again (and
    // so committed) only once the lease had run out. Times in the ledger
    // are whole milliseconds.
    let row = ledger_row(&app, &abandoned).await;
    let committed = row.committed_at.expect("committed_at");
    let lease_end = claimed_at + lease - time::Duration::milliseconds(1);
    assert!(
        committed >= lease_end,
        "committed at {committed}, before the lease ended at {lease_end}"
    );
}
