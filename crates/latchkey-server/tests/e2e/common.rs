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
    pub http: reqwest::Client,
    pub jwt_secret: String,
    pub store_secret: String,
    /// Every response body the helpers below received.
    pub bodies: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// `extra_toml` is appended to the config file (e.g. custom profiles).
pub async fn spawn_app_with(extra_toml: &str) -> TestApp {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let cfg_path = dir.path().join("latchkey.toml");
    let toml = format!(
        "data_dir = {:?}\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\nlisten = \"127.0.0.1:0\"\n{extra_toml}",
        data_dir.display().to_string()
    );
    std::fs::write(&cfg_path, toml).unwrap();
    let config = Config::load(Some(&cfg_path), &Default::default()).expect("config loads");
    let app = Application::build(config).await.expect("app builds");
    let base = app.public_url().to_owned();
    let store = app.store_url().to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let secrets = latchkey_server::secrets::load_or_create(&data_dir).unwrap();
    TestApp {
        base,
        store,
        data_dir,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        jwt_secret: secrets.jwt_secret.expose().to_owned(),
        store_secret: secrets.store_secret_access_key.expose().to_owned(),
        bodies: Arc::default(),
        _dir: dir,
        _stop: tx,
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn photo_request(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    json!({
        "profile": "photo",
        "filename": name,
        "content_type": content_type,
        "size": bytes.len(),
        "sha256": sha256_hex(bytes),
    })
}
