//! One kept-alive HTTP/1.1 connection per task, for the phases that time
//! small requests (grants, `/s3/params`, sign-part, bare routes).
//!
//! The generator shares the machine's cores with the server it measures, so
//! every microsecond it spends per request is one the server does not get.
//! Through reqwest a grant cost the generator about half the CPU it cost
//! the server (URL handling, the pool's locks, the body serialized and the
//! answer parsed into a `serde_json::Value` each time; docs/BENCHMARKS.md,
//! session 11): here the request's head and body are built once, each
//! task owns its connection, and the answer is only read whole and
//! checked. The peers are timed through this same path, so the ratios
//! stay like for like.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;

use super::ensure_loopback;

/// A request sent again and again, built once. Cloning it, as each
/// operation's future does, counts a reference; each send copies only the
/// header map (hyper takes a request by value).
#[derive(Clone)]
pub struct Prepared(Arc<Parts>);

struct Parts {
    addr: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Prepared {
    /// `url` must be loopback; `headers` go with every send, after `Host`.
    pub fn new(method: Method, url: &Url, headers: &HeaderMap, body: Bytes) -> Result<Self> {
        ensure_loopback(url)?;
        let addr = *url
            .socket_addrs(|| None)
            .context("resolving a loopback URL")?
            .first()
            .context("a URL without an address")?;
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let uri: Uri = path
            .parse()
            .context("a URL's path is not a request target")?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut all = HeaderMap::with_capacity(headers.len() + 1);
        all.insert(HOST, HeaderValue::from_str(&host).context("Host header")?);
        for (k, v) in headers {
            all.append(k.clone(), v.clone());
        }
        Ok(Self(Arc::new(Parts {
            addr,
            method,
            uri,
            headers: all,
            body,
        })))
    }

    /// This request, to `uri` (its own target, or another path on the same
    /// server: sign-part asks for a new part number each time).
    fn request(&self, uri: &Uri) -> Request<Full<Bytes>> {
        let p = &*self.0;
        let mut req = Request::new(Full::new(p.body.clone()));
        *req.method_mut() = p.method.clone();
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = p.headers.clone();
        req
    }
}

/// One task's connection, opened on first use and again after the server
/// closes it.
#[derive(Default)]
pub struct Conn {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Sends `req` and reads its answer whole; a non-2xx status is an error
    /// quoting the start of the body (which never holds a URL here: these
    /// routes answer JSON problems). A request on a kept-alive connection
    /// the server had closed is sent once more on a new one, as pooling
    /// clients do.
    async fn send(&mut self, req: &Prepared, uri: &Uri) -> Result<Bytes> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        match self.try_send(req, uri).await {
            // The failed send dropped the connection: this opens a new one.
            Err(e) if reused && e.downcast_ref::<hyper::Error>().is_some() => {
                self.try_send(req, uri).await
            }
            other => other,
        }
    }

    async fn try_send(&mut self, req: &Prepared, uri: &Uri) -> Result<Bytes> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(connect(req.0.addr).await?),
        };
        let sent = async {
            sender.ready().await?;
            let resp = sender.send_request(req.request(uri)).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        let (status, body) = match sent {
            Ok(v) => v,
            Err(e) => {
                self.sender = None;
                return Err(anyhow!(e));
            }
        };
        if !status.is_success() {
            bail!("HTTP {status}: {}", snippet(&body));
        }
        Ok(body)
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    // Requests are small and answered at once: no Nagle delay on either.
    tcp.set_nodelay(true)?;
    let (sender, conn) = handshake(TokioIo::new(tcp))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Ends when the server closes or the sender is dropped; a failure
        // surfaces at the next send.
        let _ = conn.await;
    });
    Ok(sender)
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// A connection for each of a phase's tasks: task `i` only ever locks
/// entry `i`, so the locks are never contended.
#[derive(Clone)]
pub struct Conns(Arc<[tokio::sync::Mutex<Conn>]>);

impl Conns {
    pub fn new(tasks: usize) -> Self {
        Self((0..tasks).map(|_| Default::default()).collect())
    }

    pub async fn send(&self, task: usize, req: &Prepared) -> Result<Bytes> {
        self.0[task].lock().await.send(req, &req.0.uri).await
    }

    /// `req` to another `path_and_query` on the same server.
    pub async fn send_to(
        &self,
        task: usize,
        req: &Prepared,
        path_and_query: &str,
    ) -> Result<Bytes> {
        let uri = path_and_query
            .parse()
            .context("a path is not a request target")?;
        self.0[task].lock().await.send(req, &uri).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that reads one request head (no bodies: the tests send
    /// none), answers `status` with the request line as its body, and keeps
    /// the connection for `per_conn` answers before closing it. Returns its
    /// URL and a count of connections accepted.
    async fn server(
        status: &'static str,
        per_conn: usize,
    ) -> (Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end);
                        let line = head.lines().next().unwrap().to_owned();
                        let host_ok = head.to_ascii_lowercase().contains("\r\nhost: 127.0.0.1:");
                        let body = format!("{line} host={host_ok}");
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tcp.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    // Then the server closes the kept-alive connection.
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn requests_are_sent_as_prepared_and_reuse_the_connection() {
        let (url, accepted) = server("200 OK", usize::MAX).await;
        let req = Prepared::new(
            Method::GET,
            &url.join("/s3/params?filename=a.bin").unwrap(),
            &HeaderMap::new(),
            Bytes::new(),
        )
        .unwrap();
        let conns = Conns::new(1);
        for _ in 0..3 {
            let body = conns.send(0, &req).await.unwrap();
            assert_eq!(
                &body[..],
                b"GET /s3/params?filename=a.bin HTTP/1.1 host=true"
            );
        }
        let body = conns
            .send_to(0, &req, "/s3/multipart/x/7?key=k")
            .await
            .unwrap();
        assert_eq!(&body[..], b"GET /s3/multipart/x/7?key=k HTTP/1.1 host=true");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_opened_again() {
        let (url, accepted) = server("200 OK", 1).await;
        let req = Prepared::new(Method::GET, &url, &HeaderMap::new(), Bytes::new()).unwrap();
        let conns = Conns::new(1);
        for _ in 0..4 {
            conns.send(0, &req).await.unwrap();
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_error_status_is_an_error_quoting_the_answer() {
        let (url, _) = server("503 Service Unavailable", usize::MAX).await;
        let req = Prepared::new(Method::POST, &url, &HeaderMap::new(), Bytes::new()).unwrap();
        let err = Conns::new(1).send(0, &req).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 503"), "{err}");
        assert!(err.contains("POST / HTTP/1.1"), "{err}");
    }

    #[tokio::test]
    async fn only_loopback_is_prepared_and_a_dead_server_is_an_error() {
        let far = Url::parse("http://192.0.2.1:9/").unwrap();
        assert!(Prepared::new(Method::GET, &far, &HeaderMap::new(), Bytes::new()).is_err());
        // A port nothing listens on (bound, then released).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let req = Prepared::new(Method::GET, &url, &HeaderMap::new(), Bytes::new()).unwrap();
        let err = format!("{:#}", Conns::new(1).send(0, &req).await.unwrap_err());
        assert!(err.contains("connecting to"), "{err}");
    }
}
