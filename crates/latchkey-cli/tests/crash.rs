//! The ledger keeps its promise across `kill -9` (DESIGN §4, I1–I4).
//!
//! The real `latchkey serve` runs on fixed loopback ports while client tasks
//! upload in the direct modes (put, post, headers, multipart) — completing most, aborting
//! some, abandoning the rest — and a killer `kill -9`s the broker at random
//! moments and restarts it on the same data dir. Afterwards, with the broker
//! left running until its reconciler and webhook worker have settled, the
//! test checks the whole bucket and ledger:
//! - I1: every object in the bucket belongs to a committed upload;
//! - I2: every committed upload's object exists with the recorded size and sha256;
//! - I3: no upload is left pending;
//! - I4: every upload that ever committed produced exactly one `upload.committed`
//!   webhook id at the receiver (deliveries may repeat; ids may not be missing).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const UPLOADS_PER_TASK: usize = 40;
const TASKS: usize = 4;
const KILLS: usize = 12;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker {
    config: PathBuf,
    data: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Broker {
    /// Starts `latchkey serve` and waits for its banner (it listens then).
    fn start(&self) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.data.with_extension("log"))
                    .unwrap(),
            )
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("broker:") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("serve came up");
        *self.child.lock().unwrap() = Some(child);
    }

    fn kill9(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill(); // SIGKILL on Unix
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The app backend: records every webhook it receives.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                s.lock()
                    .unwrap()
                    .push((id, serde_json::from_str(&body).unwrap()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

/// Retries a request while the broker is down, as a phone app would (a few
/// times, briefly); gives up quietly after that.
async fn retrying<F, Fut>(mut send: F) -> Option<reqwest::Response>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Response, reqwest::Error>>,
{
    for _ in 0..20 {
        match send().await {
            Ok(res) if res.status().is_server_error() => {}
            Ok(res) => return Some(res),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    None
}

/// One upload, driven like a flaky phone: any step may fail because the
/// broker is being killed; the invariants must hold whatever happens.
async fn one_upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    mode: &str,
    rng_bits: u32,
) -> Option<()> {
    let size = 1 + (rng_bits as usize % 40_000);
    let bytes: Vec<u8> = (0..size).map(|i| (i as u32 ^ rng_bits) as u8).collect();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let body = json!({"profile": "crash", "filename": "c.bin", "content_type": "application/octet-stream",
                      "size": size, "sha256": sha, "mode": mode});
    // The same Idempotency-Key on every retry: one upload, however many tries.
    let idem = format!("crash-{rng_bits:x}-{size}");
    let created: Value = retrying(|| {
        http.post(format!("{base}/v1/uploads"))
            .bearer_auth(token)
            .header("idempotency-key", &idem)
            .json(&body)
            .send()
    })
    .await?
    .json()
    .await
    .ok()?;
    let id = created["id"].as_str()?.to_owned();
    let grant = &created["grant"];
    let sent = match mode {
        "multipart" => {
            // Small files: every part the grant lists, in order.
            let part_size = grant["multipart"]["part_size"].as_u64()? as usize;
            let mut last = None;
            for part in grant["multipart"]["parts"].as_array()? {
                let n = part["number"].as_u64()? as usize;
                let chunk = bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())].to_vec();
                let mut req = http.put(part["url"].as_str()?);
                for (k, v) in part["headers"].as_object().into_iter().flatten() {
                    if k != "content-length" {
                        req = req.header(k, v.as_str()?);
                    }
                }
                last = Some(req.body(chunk).send().await);
            }
            last?
        }
        "post" => {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in grant["fields"].as_object()? {
                form = form.text(k.clone(), v.as_str()?.to_owned());
            }
            form = form.part("file", reqwest::multipart::Part::bytes(bytes));
            http.post(grant["url"].as_str()?)
                .multipart(form)
                .send()
                .await
        }
        _ => {
            let mut req = http.put(grant["url"].as_str()?);
            for (k, v) in grant["headers"].as_object()? {
                if k != "content-length" {
                    req = req.header(k, v.as_str()?);
                }
            }
            req.body(bytes).send().await
        }
    };
    sent.ok()?;
    match rng_bits % 10 {
        // Abandoned: the reconciler (or the store's own event) must settle it.
        0 | 1 => {}
        // Aborted: bytes already in the store must go.
        2 => {
            retrying(|| {
                http.delete(format!("{base}/v1/uploads/{id}"))
                    .bearer_auth(token)
                    .send()
            })
            .await?;
        }
        _ => {
            retrying(|| {
                http.post(format!("{base}/v1/uploads/{id}/complete"))
                    .bearer_auth(token)
                    .send()
            })
            .await?;
        }
    }
    Some(())
}

fn all_rows(ledger_url: &str) -> Vec<latchkey_domain::Upload> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        rt.block_on(async {
            let ledger = latchkey_ledger::connect(ledger_url).await.unwrap();
            let mut rows = Vec::new();
            for user in ["alice", "bob"] {
                let mut after = None;
                loop {
                    let filter = latchkey_ledger::ListFilter {
                        status: None,
                        profile: None,
                        after,
                        limit: 100,
                    };
                    let page = ledger
                        .list(&latchkey_domain::UserId::parse(user).unwrap(), &filter)
                        .await
                        .unwrap();
                    after = page.last().map(|r| r.id);
                    let done = page.len() < 100;
                    rows.extend(page);
                    if done {
                        break;
                    }
                }
            }
            ledger.close().await;
            rows
        })
    })
}

fn s3_client(data: &Path, store_port: u16) -> aws_sdk_s3::Client {
    let secrets: toml::Value =
        toml::from_str(&std::fs::read_to_string(data.join("secrets.toml")).unwrap()).unwrap();
    let creds = aws_credential_types::Credentials::new(
        secrets["store_access_key_id"].as_str().unwrap(),
        secrets["store_secret_access_key"].as_str().unwrap(),
        None,
        None,
        "test",
    );
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{store_port}"))
            .force_path_style(true)
            .credentials_provider(creds)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (hook, seen) = receiver().await;
    let (broker_port, store_port) = (free_port(), free_port());
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{broker_port}\"\n[store]\nlisten = \"127.0.0.1:{store_port}\"\n\
             [profiles.crash]\ncontent_types = [\"application/octet-stream\"]\ngrant_ttl = \"3s\"\n\
             [reconciler]\nevery = \"300ms\"\ngrace = \"1s\"\norphan_grace = \"2s\"\n\
             [limits]\ngrants_per_minute = 0\n\
             [webhooks]\nurl = {hook:?}\nsecret = \"whsec_Y3Jhc2gtdGVzdC1zZWNyZXQta2V5\"\npoll = \"100ms\"\nretry_base = \"100ms\"\n"
        ),
    )
    .unwrap();
    let broker = Arc::new(Broker {
        config: config.clone(),
        data: data.clone(),
        child: Mutex::new(None),
    });
    broker.start();
    let base = format!("http://127.0.0.1:{broker_port}");
    let token_for = |user: &str| {
        let out = Command::new(BIN)
            .args(["token", "--user", user, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let tokens = [token_for("alice"), token_for("bob")];

    // The killer.
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let broker = broker.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut kills = 0;
            while kills < KILLS && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rand::rng().random_range(150..700)));
                broker.kill9();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..200)));
                broker.start();
            }
            kills
        })
    };

    // The clients.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (http, base, token) = (http.clone(), base.clone(), tokens[t % 2].clone());
        tasks.spawn(async move {
            for i in 0..UPLOADS_PER_TASK {
                let mode = ["put", "post", "headers", "multipart"][(t + i) % 4];
                let bits: u32 = rand::rng().random();
                let _ = one_upload(&http, &base, &token, mode, bits).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    stop.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(kills > 0, "the broker was killed at least once");

    // Let the broker settle: grants expire (3 s), the reconciler sweeps, the
    // webhook worker drains the outbox.
    let ledger_url = format!("sqlite://{}", data.join("ledger.db").display());
    let s3 = s3_client(&data, store_port);
    let mut settled = false;
    let mut last = String::new();
    for _ in 0..180 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = all_rows(&ledger_url);
        let pending = rows
            .iter()
            .any(|r| r.status == latchkey_domain::UploadStatus::Pending);
        let live = rows
            .iter()
            .filter(|r| r.status == latchkey_domain::UploadStatus::Committed)
            .count();
        // Committed at some point: a client may delete an upload that the
        // store's in-process event already committed.
        let committed: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.committed_at.is_some())
            .map(|r| r.id.to_string())
            .collect();
        let announced: BTreeSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["type"] == "upload.committed")
            .map(|(_, v)| v["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        let listed = s3
            .list_objects_v2()
            .bucket("latchkey")
            .send()
            .await
            .unwrap();
        let objects = listed.contents().len();
        if !pending && committed == announced && objects == live {
            settled = true;
            break;
        }
        last = format!(
            "pending rows: {pending}; ever committed {} vs announced {}; objects {objects} vs live {live}",
            committed.len(),
            announced.len()
        );
    }

    // The checks, whether or not it settled (their messages say what broke).
    let rows = all_rows(&ledger_url);
    let by_key: BTreeMap<String, &latchkey_domain::Upload> =
        rows.iter().map(|r| (r.key.to_string(), r)).collect();
    assert!(
        rows.len() > TASKS * UPLOADS_PER_TASK / 2,
        "most uploads got a row ({} rows; {last})",
        rows.len()
    );
    // I3
    let stuck: Vec<_> = rows
        .iter()
        .filter(|r| r.status == latchkey_domain::UploadStatus::Pending)
        .map(|r| (r.id, r.mode))
        .collect();
    if !stuck.is_empty() {
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let tail = &warnings[warnings.len().saturating_sub(20)..];
        panic!(
            "I3: rows stuck pending: {stuck:?}\nbroker warnings (last 20):\n{}",
            tail.join("\n")
        );
    }
    // I1
    let listed = s3
        .list_objects_v2()
        .bucket("latchkey")
        .max_keys(1000)
        .send()
        .await
        .unwrap();
    for obj in listed.contents() {
        let key = obj.key().unwrap();
        let row = by_key.get(key);
        assert!(
            row.is_some_and(|r| r.status == latchkey_domain::UploadStatus::Committed),
            "I1: object {key} belongs to no committed upload ({:?})",
            row.map(|r| r.status)
        );
    }
    // I2
    let committed: Vec<_> = rows
        .iter()
        .filter(|r| r.status == latchkey_domain::UploadStatus::Committed)
        .collect();
    assert!(!committed.is_empty());
    for r in &committed {
        let got = s3
            .get_object()
            .bucket("latchkey")
            .key(r.key.as_str())
            .send()
            .await;
        let got = got.unwrap_or_else(|e| panic!("I2: committed {} has no object: {e:?}", r.id));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.len() as u64, r.size, "I2: size of {}", r.id);
        assert_eq!(
            Some(hex::encode(sha2::Sha256::digest(&bytes))),
            r.sha256.map(|d| d.to_hex()),
            "I2: sha256 of {}",
            r.id
        );
    }
    // I4
    let seen = seen.lock().unwrap();
    let mut ids_per_upload: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, v) in seen.iter().filter(|(_, v)| v["type"] == "upload.committed") {
        ids_per_upload
            .entry(v["data"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(id.clone());
    }
    let ever_committed: Vec<_> = rows.iter().filter(|r| r.committed_at.is_some()).collect();
    for r in &ever_committed {
        let ids = ids_per_upload.get(&r.id.to_string());
        assert_eq!(
            ids.map(BTreeSet::len),
            Some(1),
            "I4: upload {} announced by {:?}",
            r.id,
            ids
        );
    }
    assert!(
        settled,
        "the system settled (no pending rows, every commit announced, no stray objects): {last}"
    );
}
