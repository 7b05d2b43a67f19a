//! `credentials` mode: scoped temporary credentials, used by a real client
//! (boto3). On the embedded store they upload under the caller's own prefix
//! and nothing else (other prefixes, reads, deletes, listing, copies, bucket
//! calls and expired tokens are refused by the store); what they write is
//! adopted into the ledger and checked against the profile. On Garage (no
//! STS) the mode is refused with `mode_not_supported`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Res, TestApp, on_s3, spawn_app, spawn_app_with};

/// Runs boto3 with `credentials` over `steps` and returns one result per
/// step: `{op, key, ok}` plus `code`/`status` when S3 refused it.
const BOTO3: &str = r#"
import json, sys
import boto3, botocore
from botocore.config import Config
from boto3.s3.transfer import TransferConfig

spec = json.load(sys.stdin)
c = spec["credentials"]
s3 = boto3.client(
    "s3",
    endpoint_url=c["endpoint"],
    region_name=c["region"],
    aws_access_key_id=c["access_key_id"],
    aws_secret_access_key=c["secret_access_key"],
    aws_session_token=c["session_token"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
bucket = c["bucket"]
out = []
for step in spec["steps"]:
    op, key = step["op"], step.get("key")
    try:
        if op == "put":
            with open(step["file"], "rb") as f:
                s3.put_object(Bucket=bucket, Key=key, Body=f.read(), ContentType=step["content_type"])
        elif op == "upload_file":
            mib5 = 5 * 1024 * 1024
            s3.upload_file(step["file"], bucket, key, ExtraArgs={"ContentType": step["content_type"]},
                           Config=TransferConfig(multipart_threshold=mib5, multipart_chunksize=mib5, use_threads=False))
        elif op == "get":
            s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        elif op == "head":
            s3.head_object(Bucket=bucket, Key=key)
        elif op == "delete":
            s3.delete_object(Bucket=bucket, Key=key)
        elif op == "list":
            s3.list_objects_v2(Bucket=bucket, Prefix=key)
        elif op == "copy":
            s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": step["source"]})
        elif op == "list_buckets":
            s3.list_buckets()
        elif op == "create_bucket":
            s3.create_bucket(Bucket=key)
        else:
            raise SystemExit("unknown op " + op)
        out.append({"op": op, "key": key, "ok": True})
    except botocore.exceptions.ClientError as e:
        out.append({"op": op, "key": key, "ok": False,
                    "code": e.response["Error"]["Code"],
                    "status": e.response["ResponseMetadata"]["HTTPStatusCode"]})
print(json.dumps(out))
"#;

async fn boto3(credentials: &Value, steps: Value) -> Vec<Value> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(BOTO3)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs it, and boto3)");
    let spec = json!({"credentials": credentials, "steps": steps}).to_string();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(spec.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("boto3 output {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

async fn credentials(app: &TestApp, token: &str, profile: &str) -> Value {
    let res = app
        .call(
            reqwest::Method::POST,
            "/v1/credentials",
            Some(token),
            Some(json!({ "profile": profile })),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body
}

async fn create_idempotent(app: &TestApp, token: &str, body: Value, key: &str) -> Res {
    let res = app
        .http
        .post(format!("{}/v1/uploads", app.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    app.bodies.lock().unwrap().push(text.clone());
    Res {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        headers,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn refused(result: &Value, code: &str) {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["status"], 403, "{result}");
    // The store may refuse an upload before reading its body and close the
    // connection; boto3 then has the status but no XML to take the code
    // from, and reports the status itself as the code.
    let got = result["code"].as_str().unwrap_or("");
    assert!(got == code || got == "403", "{result}");
}

/// The row for `key` once the store's event has been handled (bounded).
async fn row_for_key(app: &TestApp, token: &str, key: &str) -> Value {
    for _ in 0..100 {
        let list = app
            .call(
                reqwest::Method::GET,
                "/v1/uploads?limit=100",
                Some(token),
                None,
            )
            .await;
        let found = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["key"] == key && u["status"] != "pending")
            .cloned();
        if let Some(row) = found {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no settled row for {key}");
}

async fn download(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
    let dl = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}/download"),
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
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn credentials_mode_follows_the_store_capability() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let res = app
        .call(
            reqwest::Method::POST,
            "/v1/credentials",
            Some(&token),
            Some(json!({"profile": "file"})),
        )
        .await;
    let created = app
        .create(
            &token,
            json!({"profile": "file", "filename": "a.txt", "content_type": "text/plain",
                   "size": 5, "mode": "credentials"}),
        )
        .await;
    if on_s3() {
        // Garage has no STS: refused before any row or credential exists.
        for r in [&res, &created] {
            assert_eq!(r.status, 400, "{}", r.text);
            assert_eq!(r.body["code"], "mode_not_supported", "{}", r.text);
        }
        return;
    }
    assert_eq!(res.status, 200, "{}", res.text);
    let c = &res.body;
    assert!(c["access_key_id"].as_str().unwrap().starts_with("LKT"));
    assert_eq!(c["prefix"], "u/alice/file/");
    assert_eq!(c["bucket"], "latchkey");
    assert_eq!(c["endpoint"], app.store.as_str());
    assert!(c["session_token"].as_str().unwrap().len() > 20);
    assert!(c["server_time"].is_string() && c["expiration"].is_string());
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["grant"]["method"], "credentials");
    assert_eq!(
        created.body["grant"]["credentials"]["prefix"],
        "u/alice/file/"
    );

    // A profile that does not list the mode refuses it.
    let app = spawn_app_with("[profiles.nocreds]\nmodes = [\"put\"]\n").await;
    let res = app
        .call(
            reqwest::Method::POST,
            "/v1/credentials",
            Some(&app.token("alice")),
            Some(json!({"profile": "nocreds"})),
        )
        .await;
    assert_eq!(res.status, 400, "{}", res.text);
    assert_eq!(res.body["code"], "mode_not_allowed");
}

#[tokio::test]
async fn boto3_uploads_under_its_prefix_only_and_the_upload_is_adopted() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    if on_s3() {
        let res = app
            .call(
                reqwest::Method::POST,
                "/v1/credentials",
                Some(&alice),
                Some(json!({})),
            )
            .await;
        assert_eq!(res.body["code"], "mode_not_supported", "{}", res.text);
        return;
    }
    let creds = credentials(&app, &alice, "file").await;
    let prefix = creds["prefix"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let small = b"hello from boto3 with temporary credentials\n".to_vec();
    // Over boto3's multipart threshold, so it creates, uploads parts and completes.
    let big: Vec<u8> = (0..(6 * 1024 * 1024 + 17))
        .map(|i| (i % 251) as u8)
        .collect();
    let small_file = write(dir.path(), "small.txt", &small);
    let big_file = write(dir.path(), "big.bin", &big);
    let small_key = format!("{prefix}notes/hello.txt");
    let big_key = format!("{prefix}big.bin");
    let results = boto3(
        &creds,
        json!([
            {"op": "put", "key": small_key, "file": small_file, "content_type": "text/plain"},
            {"op": "upload_file", "key": big_key, "file": big_file, "content_type": "application/octet-stream"},
            {"op": "put", "key": "u/bob/file/x.txt", "file": small_file, "content_type": "text/plain"},
            {"op": "put", "key": "u/alice/photo/x.txt", "file": small_file, "content_type": "text/plain"},
            {"op": "put", "key": "u/alice/filex", "file": small_file, "content_type": "text/plain"},
            {"op": "get", "key": small_key},
            {"op": "delete", "key": small_key},
            {"op": "list", "key": prefix},
            {"op": "copy", "key": format!("{prefix}copy.txt"), "source": small_key},
            {"op": "list_buckets"},
            {"op": "create_bucket", "key": "another-bucket"},
        ]),
    )
    .await;
    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    assert_eq!(results[1]["ok"], true, "{}", results[1]);
    for r in &results[2..] {
        refused(r, "AccessDenied");
    }

    // Both objects were adopted: committed rows of alice's, with the bytes.
    for (key, bytes, ct) in [
        (&small_key, &small, "text/plain"),
        (&big_key, &big, "application/octet-stream"),
    ] {
        let row = row_for_key(&app, &alice, key).await;
        assert_eq!(row["status"], "committed", "{row}");
        assert_eq!(row["mode"], "credentials");
        assert_eq!(row["profile"], "file");
        assert_eq!(row["content_type"], ct);
        assert_eq!(row["size"], bytes.len());
        let got = download(&app, &alice, row["id"].as_str().unwrap()).await;
        assert!(got == *bytes, "downloaded bytes differ for {key}");
    }
    // Nobody else sees them, and nothing was written under bob's prefix.
    let bob = app.token("bob");
    let list = app
        .call(reqwest::Method::GET, "/v1/uploads", Some(&bob), None)
        .await;
    assert_eq!(list.body["items"], json!([]), "{}", list.text);

    // Alice's key pair with bob's session token (a wider or other scope) is
    // refused: the key id is bound to its token.
    let bobs = credentials(&app, &bob, "file").await;
    let mut mixed = creds.clone();
    mixed["session_token"] = bobs["session_token"].clone();
    let results = boto3(
        &mixed,
        json!([{"op": "put", "key": "u/bob/file/y.txt", "file": small_file, "content_type": "text/plain"}]),
    )
    .await;
    refused(&results[0], "AccessDenied");
    // And without any token the temporary key is refused too.
    let mut bare = creds.clone();
    bare["session_token"] = Value::Null;
    let results = boto3(
        &bare,
        json!([{"op": "put", "key": format!("{prefix}z.txt"), "file": small_file, "content_type": "text/plain"}]),
    )
    .await;
    refused(&results[0], "AccessDenied");
}

#[tokio::test]
async fn adopted_objects_are_checked_against_the_profile() {
    let app = spawn_app_with(
        "[profiles.notes]\ncontent_types = [\"text/plain\"]\nmax_bytes = 32\nquota_count = 2\n",
    )
    .await;
    let alice = app.token("alice");
    if on_s3() {
        let res = app
            .call(
                reqwest::Method::POST,
                "/v1/credentials",
                Some(&alice),
                Some(json!({"profile": "notes"})),
            )
            .await;
        assert_eq!(res.body["code"], "mode_not_supported", "{}", res.text);
        return;
    }
    let creds = credentials(&app, &alice, "notes").await;
    let prefix = creds["prefix"].as_str().unwrap().to_owned();
    assert_eq!(prefix, "u/alice/notes/");
    let dir = tempfile::tempdir().unwrap();
    let ok = write(dir.path(), "ok.txt", b"fine");
    let big = write(dir.path(), "big.txt", &[b'x'; 33]);
    let steps = json!([
        {"op": "put", "key": format!("{prefix}a.txt"), "file": ok, "content_type": "text/plain"},
        {"op": "put", "key": format!("{prefix}b.html"), "file": ok, "content_type": "text/html"},
        {"op": "put", "key": format!("{prefix}c.txt"), "file": big, "content_type": "text/plain"},
    ]);
    for r in boto3(&creds, steps).await {
        assert_eq!(r["ok"], true, "{r}");
    }
    let a = row_for_key(&app, &alice, &format!("{prefix}a.txt")).await;
    assert_eq!(a["status"], "committed", "{a}");
    for (name, reason) in [("b.html", "type_not_allowed"), ("c.txt", "too_large")] {
        let row = row_for_key(&app, &alice, &format!("{prefix}{name}")).await;
        assert_eq!(row["status"], "rejected", "{row}");
        assert_eq!(row["reason"], reason, "{row}");
    }
    // One more fits the count quota of 2 (rejected rows do not count); the
    // one after that is over it: rejected, and the object deleted.
    let steps = json!([
        {"op": "put", "key": format!("{prefix}d.txt"), "file": ok, "content_type": "text/plain"},
    ]);
    assert_eq!(boto3(&creds, steps).await[0]["ok"], true);
    let d = row_for_key(&app, &alice, &format!("{prefix}d.txt")).await;
    assert_eq!(d["status"], "committed", "{d}");
    let steps = json!([
        {"op": "put", "key": format!("{prefix}e.txt"), "file": ok, "content_type": "text/plain"},
    ]);
    assert_eq!(boto3(&creds, steps).await[0]["ok"], true);
    let e = row_for_key(&app, &alice, &format!("{prefix}e.txt")).await;
    assert_eq!(e["status"], "rejected", "{e}");
    assert_eq!(e["reason"], "quota_exceeded", "{e}");
    // Rejected objects are gone from the store (the root key may look).
    let gone = app
        .http
        .get(format!("{}/latchkey/{prefix}e.txt", app.store))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 403, "anonymous reads are refused either way");
    // With the quota used up, no new credentials are handed out.
    let res = app
        .call(
            reqwest::Method::POST,
            "/v1/credentials",
            Some(&alice),
            Some(json!({"profile": "notes"})),
        )
        .await;
    assert_eq!(res.status, 429, "{}", res.text);
    assert_eq!(res.body["code"], "quota_exceeded");
}

#[tokio::test]
async fn a_credentials_row_commits_its_declared_file() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    let bytes = b"the declared file".to_vec();
    let req = json!({"profile": "file", "filename": "declared.txt", "content_type": "text/plain",
                     "size": bytes.len(), "mode": "credentials"});
    let created = create_idempotent(&app, &alice, req.clone(), "cred-1").await;
    if on_s3() {
        assert_eq!(created.status, 400, "{}", created.text);
        assert_eq!(created.body["code"], "mode_not_supported");
        return;
    }
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let grant = &created.body["grant"];
    let creds = &grant["credentials"];
    assert!(key.starts_with(creds["prefix"].as_str().unwrap()));
    assert_eq!(grant["url"], format!("{}/latchkey/{key}", app.store));
    // A repeated Idempotency-Key re-issues the very same credentials.
    let again = create_idempotent(&app, &alice, req, "cred-1").await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.body["grant"]["credentials"], *creds);

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "declared.txt", &bytes);
    let r = boto3(
        creds,
        json!([{"op": "put", "key": key, "file": file, "content_type": "text/plain"}]),
    )
    .await;
    assert_eq!(r[0]["ok"], true, "{}", r[0]);
    let id = created.body["id"].as_str().unwrap();
    let done = app.complete(&alice, id).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "committed");
    assert_eq!(download(&app, &alice, id).await, bytes);
}

#[tokio::test]
async fn expired_credentials_are_refused() {
    let app = spawn_app_with("[profiles.short]\ngrant_ttl = \"1s\"\n").await;
    let alice = app.token("alice");
    if on_s3() {
        let res = app
            .call(
                reqwest::Method::POST,
                "/v1/credentials",
                Some(&alice),
                Some(json!({"profile": "short"})),
            )
            .await;
        assert_eq!(res.body["code"], "mode_not_supported", "{}", res.text);
        return;
    }
    let creds = credentials(&app, &alice, "short").await;
    let expiration = time::OffsetDateTime::parse(
        creds["expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // Wait (bounded) until the expiry has passed on this machine's clock.
    for _ in 0..50 {
        if time::OffsetDateTime::now_utc() > expiration + Duration::from_millis(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "late.txt", b"too late");
    let prefix = creds["prefix"].as_str().unwrap();
    let r = boto3(
        &creds,
        json!([{"op": "put", "key": format!("{prefix}late.txt"), "file": file, "content_type": "text/plain"}]),
    )
    .await;
    refused(&r[0], "ExpiredToken");
    let list = app
        .call(reqwest::Method::GET, "/v1/uploads", Some(&alice), None)
        .await;
    assert_eq!(list.body["items"], json!([]), "{}", list.text);
}
