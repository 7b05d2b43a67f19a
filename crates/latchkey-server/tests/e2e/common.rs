//! Starts a real latchkey (broker + embedded S3 store + SQLite) on port 0
//! with a fresh data dir, the way zero2prod's `spawn_app` does, and collects
//! every log line so tests can prove secrets never reach them.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use latchkey_server::{Application, Config};
use serde_json::{Value, json};

pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

pub fn testdata(name: &str) -> Vec<u8> {
    let path = PathBuf::from(TESTDATA).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every log line of this test process, at debug level and above.
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(latchkey_server::telemetry::filter(
                "debug,hyper=info,h2=info",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestApp {
    pub base: String,
    pub store: String,
    pub data_dir: PathBuf,
    pub ledger_url: String,
    /// The bucket this app's store uses.
    pub bucket: String,
    /// Whether the store refuses overwrites (`If-None-Match: *`).
    pub if_none_match: bool,
    pub http: reqwest::Client,
    pub jwt_secret: String,
    pub store_secret: String,
    /// Every response body the helpers below received.
    pub bodies: Arc<Mutex<Vec<String>>>,
    /// The `[store]` table, so [`TestApp::restart_with`] can reuse it.
    store_toml: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<(), String>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// Which store and ledger the suite runs against. The default is the
/// embedded store and SQLite; `scripts/test` runs the same suite again with
/// `LATCHKEY_TEST_STORE=s3` (Garage, from `LATCHKEY_TEST_S3_*`) and
/// `LATCHKEY_TEST_LEDGER=postgres` (a fresh database per test on the server
/// `LATCHKEY_TEST_DATABASE_URL` names).
pub fn on_s3() -> bool {
    std::env::var("LATCHKEY_TEST_STORE").as_deref() == Ok("s3")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set when LATCHKEY_TEST_STORE=s3"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid_like())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id() ^ rand_u32())
}

fn rand_u32() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    RandomState::new().build_hasher().finish() as u32
}

/// A bucket of its own on the S3 store, so tests (and later the reconciler
/// sweeping for orphans) never see each other's objects.
async fn fresh_bucket() -> String {
    let bucket = unique("lk-e2e-");
    let creds = aws_credential_types::Credentials::new(
        env("LATCHKEY_TEST_S3_ACCESS_KEY"),
        env("LATCHKEY_TEST_S3_SECRET_KEY"),
        None,
        None,
        "test",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(env(
            "LATCHKEY_TEST_S3_REGION",
        )))
        .endpoint_url(env("LATCHKEY_TEST_S3_ENDPOINT"))
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating test bucket {bucket}: {e:?}"));
    bucket
}

/// A database of its own on the PostgreSQL server.
async fn fresh_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = unique("lk_e2e_");
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to LATCHKEY_TEST_DATABASE_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("database URL ends in /dbname");
    format!("{base}/{name}")
}

/// `extra_toml` is appended to the config file (e.g. custom profiles).
pub async fn spawn_app_with(extra_toml: &str) -> TestApp {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut bucket_name = "latchkey".to_owned();
    let (store_toml, store_secret, if_none_match) = if extra_toml.contains("[store]") {
        // The test brings its own store.
        (String::new(), None, true)
    } else if on_s3() {
        let bucket = fresh_bucket().await;
        bucket_name = bucket.clone();
        let caps = std::env::var("LATCHKEY_TEST_S3_CAPABILITIES").unwrap_or_default();
        let toml = format!(
            "[store]\nkind = \"s3\"\nendpoint = {:?}\nregion = {:?}\nbucket = {bucket:?}\npath_style = true\naccess_key_id = {:?}\nsecret_access_key = {:?}\n{}\n",
            env("LATCHKEY_TEST_S3_ENDPOINT"),
            env("LATCHKEY_TEST_S3_REGION"),
            env("LATCHKEY_TEST_S3_ACCESS_KEY"),
            env("LATCHKEY_TEST_S3_SECRET_KEY"),
            if caps.is_empty() {
                String::new()
            } else {
                format!("capabilities = {caps}")
            },
        );
        (
            toml,
            Some(env("LATCHKEY_TEST_S3_SECRET_KEY")),
            !caps.contains("if_none_match = false"),
        )
    } else {
        ("[store]\nlisten = \"127.0.0.1:0\"\n".to_owned(), None, true)
    };
    let ledger_url = if std::env::var("LATCHKEY_TEST_LEDGER").as_deref() == Ok("postgres") {
        let admin = std::env::var("LATCHKEY_TEST_DATABASE_URL")
            .expect("LATCHKEY_TEST_DATABASE_URL must be set when LATCHKEY_TEST_LEDGER=postgres");
        fresh_database(&admin).await
    } else {
        format!("sqlite://{}", data_dir.join("ledger.db").display())
    };
    let place = Place {
        dir,
        data_dir,
        ledger_url,
        bucket: bucket_name,
        store_toml,
        store_secret,
        if_none_match,
    };
    start(place, extra_toml).await
}

/// Where an app keeps its state: what a second instance needs to take
/// over from the first.
struct Place {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    ledger_url: String,
    bucket: String,
    store_toml: String,
    store_secret: Option<String>,
    if_none_match: bool,
}

impl TestApp {
    /// Shuts this instance down (and waits until it has), then starts
    /// another on the same data dir, ledger and store, configured with
    /// `extra_toml` as [`spawn_app_with`] takes it: a broker restart.
    pub async fn restart_with(self, extra_toml: &str) -> TestApp {
        let TestApp {
            data_dir,
            ledger_url,
            bucket,
            if_none_match,
            store_toml,
            store_secret,
            _dir: dir,
            _stop,
            running,
            ..
        } = self;
        drop(_stop);
        running
            .await
            .expect("the first instance's task")
            .expect("the first instance shut down cleanly");
        let place = Place {
            dir,
            data_dir,
            ledger_url,
            bucket,
            store_toml,
            store_secret: Some(store_secret),
            if_none_match,
        };
        start(place, extra_toml).await
    }
}

async fn start(place: Place, extra_toml: &str) -> TestApp {
    let Place {
        dir,
        data_dir,
        ledger_url,
        bucket: bucket_name,
        store_toml,
        store_secret,
        if_none_match,
    } = place;
    let cfg_path = dir.path().join("latchkey.toml");
    // The photo pipeline's worker: test binaries cannot run `latchkey
    // media-worker`, so the same code is built as its own binary.
    let media_toml = if extra_toml.contains("[media]") {
        String::new()
    } else {
        format!("[media]\n{}\n", media_worker_toml())
    };
    // Keys of `[server]` a test brings (TOML cannot reopen the table).
    let (server_toml, extra_toml) = match extra_toml.strip_prefix("[server]\n") {
        Some(rest) => match rest.find("\n[") {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, ""),
        },
        None => ("", extra_toml),
    };
    let toml = format!(
        "data_dir = {:?}\n[server]\nlisten = \"127.0.0.1:0\"\n{server_toml}[ledger]\nurl = {ledger_url:?}\n{store_toml}{media_toml}{extra_toml}",
        data_dir.display().to_string()
    );
    std::fs::write(&cfg_path, toml).unwrap();
    let config = Config::load(Some(&cfg_path), &Default::default()).expect("config loads");
    let app = Application::build(config).await.expect("app builds");
    let base = app.public_url().to_owned();
    let store = app.store_url().to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .map_err(|e| format!("{e:#}"))
    });
    let secrets = latchkey_server::secrets::load_or_create(&data_dir).unwrap();
    TestApp {
        base,
        store,
        data_dir,
        ledger_url,
        bucket: bucket_name,
        if_none_match,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        jwt_secret: secrets.jwt_secret.expose().to_owned(),
        store_secret: store_secret
            .unwrap_or_else(|| secrets.store_secret_access_key.expose().to_owned()),
        bodies: Arc::default(),
        store_toml,
        _dir: dir,
        _stop: tx,
        running,
    }
}

pub struct Res {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        latchkey_api::mint_token(
            &latchkey_domain::Secret::new(self.jwt_secret.clone()),
            user,
            Duration::from_secs(3600),
            None,
            None,
        )
        .unwrap()
    }

    async fn finish(&self, res: reqwest::Response) -> Res {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        self.bodies.lock().unwrap().push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            body,
            text,
            headers,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req.send().await.unwrap()).await
    }

    pub async fn create(&self, token: &str, body: Value) -> Res {
        self.call(
            reqwest::Method::POST,
            "/v1/uploads",
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn complete(&self, token: &str, id: &str) -> Res {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/uploads/{id}/complete"),
            Some(token),
            Some(json!({})),
        )
        .await
    }

    /// Sends the grant as a client would: every signed header, then the body.
    pub async fn put_grant(
        &self,
        created: &Value,
        body: Vec<u8>,
        tweak: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Res {
        let grant = &created["grant"];
        let mut headers: Vec<(String, String)> = grant["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        tweak(&mut headers);
        let mut req = self.http.put(grant["url"].as_str().unwrap());
        for (k, v) in headers {
            if k != "content-length" {
                req = req.header(k, v);
            }
        }
        self.finish(req.body(body).send().await.unwrap()).await
    }
}

/// `worker_command = [...]` for a test's own `[media]` table.
pub fn media_worker_toml() -> String {
    format!(
        "worker_command = [{:?}]",
        env!("CARGO_BIN_EXE_media-worker")
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A request for a real photo through the `file` profile, which stores the
/// bytes as sent: the tests of grants and commits compare them byte for
/// byte. (The `photo` profile runs the photo pipeline: see `photos.rs`.)
pub fn photo_request(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    json!({
        "profile": "file",
        "filename": name,
        "content_type": content_type,
        "size": bytes.len(),
        "sha256": sha256_hex(bytes),
    })
}
