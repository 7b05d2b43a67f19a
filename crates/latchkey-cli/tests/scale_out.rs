//! Scale-out: two `latchkey serve` processes share one PostgreSQL ledger and
//! one Garage bucket. A grant issued by one is completed on the other, and
//! both see the same uploads. Runs in the Garage + PostgreSQL pass of
//! `scripts/test` (LATCHKEY_TEST_STORE=s3, LATCHKEY_TEST_LEDGER=postgres).

mod support;

use support::{BIN, Server, TESTDATA};

fn serve(config: &Path, data_dir: &Path) -> Server {
    support::serve_with(
        [
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
        &[],
    )
}

use std::path::Path;
use std::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set for the scale-out test"))
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{nanos:x}{:x}", std::process::id())
}

#[tokio::test]
async fn two_instances_share_one_ledger_and_one_store() {
    if std::env::var("LATCHKEY_TEST_STORE").as_deref() != Ok("s3")
        || std::env::var("LATCHKEY_TEST_LEDGER").as_deref() != Ok("postgres")
    {
        eprintln!(
            "scale-out test not run here: it needs LATCHKEY_TEST_STORE=s3 and LATCHKEY_TEST_LEDGER=postgres (scripts/test sets both in its second pass)"
        );
        return;
    }
    // A bucket and a database of this test's own.
    let bucket = unique("lk-scale-");
    let creds = aws_credential_types::Credentials::new(
        env("LATCHKEY_TEST_S3_ACCESS_KEY"),
        env("LATCHKEY_TEST_S3_SECRET_KEY"),
        None,
        None,
        "test",
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(env(
                "LATCHKEY_TEST_S3_REGION",
            )))
            .endpoint_url(env("LATCHKEY_TEST_S3_ENDPOINT"))
            .force_path_style(true)
            .credentials_provider(creds)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let admin = env("LATCHKEY_TEST_DATABASE_URL");
    let db = unique("lk_scale_");
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{db}\""))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let ledger_url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ledger]\nurl = {ledger_url:?}\n[auth]\njwt_secret = \"shared-scale-out-secret\"\n\
             [store]\nkind = \"s3\"\nendpoint = {:?}\nregion = {:?}\nbucket = {bucket:?}\npath_style = true\n\
             access_key_id = {:?}\nsecret_access_key = {:?}\ncapabilities = {}\n",
            env("LATCHKEY_TEST_S3_ENDPOINT"),
            env("LATCHKEY_TEST_S3_REGION"),
            env("LATCHKEY_TEST_S3_ACCESS_KEY"),
            env("LATCHKEY_TEST_S3_SECRET_KEY"),
            std::env::var("LATCHKEY_TEST_S3_CAPABILITIES").unwrap_or_else(|_| "{}".into()),
        ),
    )
    .unwrap();
    let a = serve(&config, &dir.path().join("a"));
    let b = serve(&config, &dir.path().join("b"));

    let token_out = Command::new(BIN)
        .args(["token", "--user", "alice", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(token_out.status.success());
    let token = String::from_utf8(token_out.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let http = reqwest::Client::new();
    let bytes = std::fs::read(format!("{TESTDATA}/small-gps.jpg")).unwrap();
    let created: serde_json::Value = http
        .post(format!("{}/v1/uploads", a.url))
        .bearer_auth(&token)
        // The `file` profile: committed by `complete`, served as sent.
        .json(&serde_json::json!({"profile": "file", "filename": "a.jpg", "content_type": "image/jpeg", "size": bytes.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"]
        .as_str()
        .expect("instance A grants")
        .to_owned();
    let mut put = http.put(created["grant"]["url"].as_str().unwrap());
    for (k, v) in created["grant"]["headers"].as_object().unwrap() {
        if k != "content-length" {
            put = put.header(k, v.as_str().unwrap());
        }
    }
    assert!(
        put.body(bytes.clone())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // Completed on B, visible on A.
    let done = http
        .post(format!("{}/v1/uploads/{id}/complete", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let row: serde_json::Value = http
        .get(format!("{}/v1/uploads/{id}", a.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row["status"], "committed");
    let dl: serde_json::Value = http
        .get(format!("{}/v1/uploads/{id}/download", a.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = http
        .get(dl["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
}
