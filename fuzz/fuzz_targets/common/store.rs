//! The embedded store, opened once per fuzz process in a temp folder and
//! called in-process (`LocalStore::into_service`): the same s3s auth,
//! access rules and answers as over HTTP, without a socket per case.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use latchkey_s3local::{LocalStore, LocalStoreConfig};
use latchkey_sigv4::{Credentials, Signer};
use s3s::HttpResponse;
use time::OffsetDateTime;
use tower::ServiceExt as _;

pub const BUCKET: &str = "uploads";
pub const AK: &str = "AKIDLATCHKEYFUZZ";
pub const SK: &str = "secret/for+the/fuzzed+store";
pub const HOST: &str = "127.0.0.1:9000";
pub const REGION: &str = "us-east-1";

type Service = Box<
    dyn Fn(Request<Full<Bytes>>) -> std::pin::Pin<Box<dyn Future<Output = HttpResponse> + Send>>
        + Send
        + Sync,
>;

pub struct Store {
    rt: tokio::runtime::Runtime,
    call: Service,
    pub signer: Signer,
}

pub fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = std::env::temp_dir().join(format!("latchkey-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let local = rt
            .block_on(LocalStore::open(
                LocalStoreConfig {
                    root,
                    bucket: BUCKET.into(),
                    region: REGION.into(),
                    access_key_id: AK.into(),
                    secret_access_key: latchkey_sigv4::Secret::new(SK),
                },
                None,
            ))
            .unwrap();
        let svc = local.into_service();
        let call: Service = Box::new(move |req| {
            let svc = svc.clone();
            Box::pin(async move {
                match svc.oneshot(req).await {
                    Ok(res) => res,
                    Err(e) => panic!("the store's service failed: {e:?}"),
                }
            })
        });
        Store {
            rt,
            call,
            signer: Signer::new(Credentials::new(AK, SK), REGION),
        }
    })
}

/// An answer: status, headers, whole body.
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Store {
    /// Sends a request whose URL is `http://HOST{path_and_query}`.
    pub fn send(
        &self,
        method: &[u8],
        path_and_query: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Option<Answer> {
        let mut req = Request::builder()
            .method(Method::from_bytes(method).ok()?)
            .uri(path_and_query);
        let mut has_host = false;
        for (k, v) in headers {
            has_host |= k.eq_ignore_ascii_case("host");
            req = req.header(k.as_bytes(), v.as_bytes());
        }
        if !has_host {
            req = req.header("host", HOST);
        }
        let req = req.body(Full::new(Bytes::from(body))).ok()?;
        Some(self.rt.block_on(async {
            let res = (self.call)(req).await;
            let (parts, mut body) = res.into_parts();
            let body = body.store_all_limited(64 << 20).await.unwrap().to_vec();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        }))
    }

    /// `GET`, `HEAD` or `DELETE` of `path_and_query` (path-style, bucket
    /// first), presigned now: what an honest client would see.
    pub fn signed(&self, method: &str, path_and_query: &str) -> Answer {
        let url = format!("http://{HOST}{path_and_query}");
        let url = self
            .signer
            .presign(method, &url, &[], &[], 60, OffsetDateTime::now_utc())
            .unwrap();
        let pq = &url[url.find(HOST).unwrap() + HOST.len()..];
        self.send(method.as_bytes(), pq, &[], Vec::new()).unwrap()
    }

    /// Every key in the bucket, with its size.
    pub fn list(&self) -> Vec<(String, u64)> {
        let a = self.signed("GET", &format!("/{BUCKET}?list-type=2"));
        assert!(a.status.is_success(), "list: {}", a.status);
        let xml = String::from_utf8(a.body).unwrap();
        let mut out = Vec::new();
        for item in xml.split("<Contents>").skip(1) {
            let key = between(item, "<Key>", "</Key>");
            let size = between(item, "<Size>", "</Size>").parse().unwrap();
            out.push((unescape(key), size));
        }
        assert!(!xml.contains("<IsTruncated>true"), "more than one page");
        out
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let start = s.find(open).unwrap() + open.len();
    let end = s[start..].find(close).unwrap() + start;
    &s[start..end]
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#xD;", "\r")
        .replace("&#xA;", "\n")
        .replace("&amp;", "&")
}

/// A key as it goes in a path: every byte but unreserved ones and `/`
/// percent-encoded, as SigV4's canonical URI has it.
pub fn path_of(key: &str) -> String {
    format!("/{BUCKET}/{}", latchkey_sigv4::uri_encode_path(key))
}
