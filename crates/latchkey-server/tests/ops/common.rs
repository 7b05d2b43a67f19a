//! Starts a real latchkey on port 0 with a fresh data dir (as the e2e suite
//! does), logging JSON lines into a buffer the tests can read.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use latchkey_server::config::{LogConfig, LogFormat};
use latchkey_server::{Application, Config};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every log line of this test process, as `log.format = "json"` writes it.
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let cfg = LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
        };
        latchkey_server::telemetry::try_init_with(&cfg, move || LogWriter(writer.clone()))
            .expect("the first subscriber of this process");
        buf
    })
}

/// The captured lines, parsed.
pub fn log_lines() -> Vec<Value> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
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
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub jwt_secret: String,
    stop: Option<oneshot::Sender<()>>,
    pub running: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("[store]\nlisten = \"127.0.0.1:0\"\n").await
}

/// `toml` follows `data_dir` and `[server]` in the config file, so it
/// must bring its own `[store]` section.
pub async fn spawn_app_with(toml: &str) -> TestApp {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let cfg_path = dir.path().join("latchkey.toml");
    let text = format!(
        "data_dir = {:?}\n[server]\nlisten = \"127.0.0.1:0\"\n{toml}",
        data_dir.display().to_string()
    );
    std::fs::write(&cfg_path, text).unwrap();
    let config = Config::load(Some(&cfg_path), &Default::default()).expect("config loads");
    let app = Application::build(config).await.expect("app builds");
    let base = app.public_url().to_owned();
    let addr = app.broker_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let secrets = latchkey_server::secrets::load_or_create(&data_dir).unwrap();
    TestApp {
        base,
        addr,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        jwt_secret: secrets.jwt_secret.expose().to_owned(),
        stop: Some(tx),
        running: Some(running),
        _dir: dir,
    }
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Starts the graceful shutdown `latchkey serve` does on Ctrl-C.
    pub fn shut_down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let res = self.http.get(self.url(path)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    pub async fn create(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/uploads"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Sends the grant's request with every signed header, as a client would.
    pub async fn put_grant(&self, created: &Value, body: Vec<u8>) -> u16 {
        let grant = &created["grant"];
        let mut req = self.http.put(grant["url"].as_str().unwrap());
        for (k, v) in grant["headers"].as_object().unwrap() {
            if k != "content-length" {
                req = req.header(k, v.as_str().unwrap());
            }
        }
        req.body(body).send().await.unwrap().status().as_u16()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn file_request(bytes: &[u8]) -> Value {
    json!({
        "profile": "file",
        "filename": "notes.txt",
        "content_type": "text/plain",
        "size": bytes.len(),
        "sha256": sha256_hex(bytes),
    })
}
