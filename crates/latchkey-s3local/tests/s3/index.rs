//! The on-disk object index: listing against a model (proptest), the repair
//! at open, and a `kill -9` in the middle of concurrent writes.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use latchkey_s3local::LocalStore;
use proptest::prelude::*;

use crate::common::{BUCKET, TestStore, config, serve_at, start};

/// Keys chosen to stress byte-order bounds: a prefix's successor that is not
/// UTF-8 (`ÿ` is `c3 bf`), 4-byte characters, empty path segments, keys that
/// are prefixes of others.
const KEYS: &[&str] = &[
    "a",
    "a/1",
    "a/2",
    "a/b/c",
    "a//d",
    "ab",
    "b/x/1",
    "b/x/2",
    "b/y",
    "c",
    "p/000",
    "p/001",
    "p/002",
    "p/003",
    "p/004",
    "p/005",
    "p/006",
    "p/007",
    "p/008",
    "p/009",
    "p/010",
    "p/011",
    "é/1",
    "é/2",
    "éa",
    "ÿ/1",
    "ÿz",
    "Ā",
    "\u{10ffff}/x",
    "x/x/x",
    "xx",
    "~",
];

fn store() -> &'static (tokio::runtime::Runtime, TestStore) {
    static STORE: OnceLock<(tokio::runtime::Runtime, TestStore)> = OnceLock::new();
    STORE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(async {
            let s = start().await;
            for key in KEYS {
                s.client
                    .put_object()
                    .bucket(BUCKET)
                    .key(*key)
                    .body(ByteStream::from(key.as_bytes().to_vec()))
                    .send()
                    .await
                    .unwrap();
            }
            s
        });
        (rt, s)
    })
}

/// What a listing should return, entry by entry (`/`-free markers: keys are
/// `k:` entries, common prefixes `p:`), computed the obvious way.
fn model(prefix: &str, delimiter: Option<&str>, after: Option<&str>) -> Vec<String> {
    let mut keys: Vec<&str> = KEYS.to_vec();
    keys.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        if !key.starts_with(prefix) || after.is_some_and(|a| key <= a) {
            continue;
        }
        let rolled = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| format!("p:{}", &key[..prefix.len() + i + d.len()]))
        });
        match rolled {
            Some(cp) if out.last() == Some(&cp) => {}
            Some(cp) => out.push(cp),
            None => out.push(format!("k:{key}")),
        }
    }
    out
}

/// Entries of one page, in key order (S3 returns keys and prefixes in
/// separate lists; merged they are sorted).
fn entries(keys: Vec<String>, prefixes: Vec<String>) -> Vec<String> {
    let mut all: Vec<(String, String)> = keys
        .into_iter()
        .map(|k| (k.clone(), format!("k:{k}")))
        .chain(prefixes.into_iter().map(|p| (p.clone(), format!("p:{p}"))))
        .collect();
    all.sort();
    all.into_iter().map(|(_, e)| e).collect()
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(options)
}

proptest! {
    #![proptest_config(crate::props::config(96, "tests/proptest-regressions/index.txt"))]

    /// ListObjectsV2 paged with continuation tokens, and ListObjects paged
    /// with markers, return exactly the model's entries, never more than
    /// max-keys a page, and say truncated exactly when more follow.
    #[test]
    fn listing_matches_a_model(
        prefix in pick(&["", "a", "a/", "b/", "b/x", "p/0", "é", "ÿ", "\u{10ffff}", "q", "x"]),
        delimiter in prop::option::of(pick(&["/", "x", "//", "é", "/1"])),
        after in prop::option::of(pick(&["", "a", "a/", "a/2", "b/x/1", "p/005", "é", "ÿ/", "zz"])),
        max in prop::sample::select(vec![1, 2, 3, 1000]),
    ) {
        let (rt, s) = store();
        let expected = model(prefix, delimiter, after);
        let (v2, v1) = rt.block_on(async {
            let mut v2 = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = s.client.list_objects_v2().bucket(BUCKET).prefix(prefix)
                    .set_delimiter(delimiter.map(str::to_owned))
                    .set_start_after(after.map(str::to_owned))
                    .max_keys(max)
                    .set_continuation_token(token.take())
                    .send().await.unwrap();
                let got = entries(
                    page.contents().iter().filter_map(|o| o.key()).map(str::to_owned).collect(),
                    page.common_prefixes().iter().filter_map(|p| p.prefix()).map(str::to_owned).collect(),
                );
                assert!(got.len() <= max as usize);
                assert_eq!(page.key_count(), Some(got.len() as i32));
                v2.extend(got);
                if page.is_truncated() != Some(true) {
                    break;
                }
                assert!(v2.len() < expected.len(), "truncated with nothing left: {v2:?}");
                token = Some(page.next_continuation_token().expect("a token").to_owned());
            }
            let mut v1 = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let page = s.client.list_objects().bucket(BUCKET).prefix(prefix)
                    .set_delimiter(delimiter.map(str::to_owned))
                    .max_keys(max)
                    .set_marker(marker.take())
                    .send().await.unwrap();
                let keys: Vec<String> =
                    page.contents().iter().filter_map(|o| o.key()).map(str::to_owned).collect();
                let last_key = keys.last().cloned();
                let got = entries(
                    keys,
                    page.common_prefixes().iter().filter_map(|p| p.prefix()).map(str::to_owned).collect(),
                );
                assert!(got.len() <= max as usize);
                v1.extend(got);
                if page.is_truncated() != Some(true) {
                    break;
                }
                // As clients do: NextMarker when given, else the last key.
                marker = Some(page.next_marker().map(str::to_owned).or(last_key).expect("a marker"));
            }
            (v2, v1)
        });
        prop_assert_eq!(&v2, &expected);
        prop_assert_eq!(&v1, &model(prefix, delimiter, None));
    }
}

async fn put(s: &TestStore, key: &str) {
    s.client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("text/plain")
        .body(ByteStream::from(key.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

async fn listed(s: &TestStore) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s
            .client
            .list_objects_v2()
            .bucket(BUCKET)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

/// Every file under `objects/`.
fn data_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root.join("objects")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn sha256_hex(s: &str) -> String {
    crate::common::sha256_hex(s.as_bytes())
}

/// A row whose data file vanished is dropped at open (never listed, 404),
/// and the per-object JSON sidecars of the layout before the index are
/// imported and removed.
#[tokio::test]
async fn reopen_repairs_the_index_against_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut s = serve_at(dir).await;
    for key in ["keep", "lose"] {
        put(&s, key).await;
    }
    let dir = s.dir.take().unwrap();
    s.handle.shutdown().await;
    let files = data_files(&root);
    assert_eq!(files.len(), 2, "{files:?}");
    let file_of = |key: &str| {
        let h = sha256_hex(key);
        files
            .iter()
            .find(|f| f.file_name().unwrap().to_str().unwrap().starts_with(&h))
            .unwrap()
            .clone()
    };
    std::fs::remove_file(file_of("lose")).unwrap();

    // "old/layout" as the store before the index kept it: a sidecar beside
    // its data file, and no row.
    let h = sha256_hex("old/layout");
    let fanout = root.join("objects").join(&h[..2]);
    std::fs::create_dir_all(&fanout).unwrap();
    let data = format!("{h}.0123456789abcdef0123456789abcdef.data");
    std::fs::write(fanout.join(&data), b"old/layout").unwrap();
    let sidecar = fanout.join(format!("{h}.json"));
    let json = serde_json::json!({
        "key": "old/layout", "data": data, "size": 10, "etag": crate::common::md5_hex(b"old/layout"),
        "sha256": sha256_hex("old/layout"), "attrs": {"content_type": "text/old", "metadata": {"m": "1"}},
        "last_modified_ms": 1_700_000_000_000i64, "parts_count": null
    });
    std::fs::write(&sidecar, serde_json::to_vec(&json).unwrap()).unwrap();

    let s = serve_at(dir).await;
    assert!(!sidecar.exists(), "an imported sidecar is removed");
    assert_eq!(listed(&s).await, vec!["keep", "old/layout"]);
    assert!(!s.exists("lose").await);
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("old/layout")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/old"));
    assert_eq!(head.content_length(), Some(10));
    assert_eq!(
        head.metadata().unwrap().get("m").map(String::as_str),
        Some("1")
    );
    let body = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("old/layout")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(body.as_ref(), b"old/layout");
    assert_eq!(data_files(&root).len(), 2);

    // A deleted key's bytes go with it; a replaced key keeps only the new
    // bytes (the writer removes the old file once the row is committed).
    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("keep")
        .send()
        .await
        .unwrap();
    put(&s, "old/layout").await;
    // The writer removes them off the request path, just after answering.
    let mut left = data_files(&root);
    for _ in 0..2000 {
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        left = data_files(&root);
    }
    assert_eq!(left.len(), 1, "{left:?}");
}

/// Set in the child process of the kill -9 test: the folder it serves.
const CHILD_ROOT: &str = "LATCHKEY_S3LOCAL_TEST_CHILD_ROOT";

/// The child: serves `root` and prints its port until killed.
async fn serve_until_killed(root: &str) {
    let store = LocalStore::open(config(Path::new(root)), None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = store.serve(listener);
    println!("PORT {}", handle.local_addr.port());
    std::future::pending::<()>().await;
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Concurrent PUTs and DELETEs against a store in another process, which is
/// SIGKILLed mid-stream. Reopened: every acknowledged PUT reads back whole,
/// every acknowledged DELETE stays deleted, every listed key reads back, and
/// no data file is left that the index does not name.
#[tokio::test]
async fn kill_9_mid_writes_leaves_index_and_files_agreeing() {
    // The same test binary, run again as the store process.
    if let Ok(root) = std::env::var(CHILD_ROOT) {
        return serve_until_killed(&root).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut child = KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "index::kill_9_mid_writes_leaves_index_and_files_agreeing",
                "--nocapture",
            ])
            .env(CHILD_ROOT, &root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let port: u16 = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if let Some(port) = line.unwrap().strip_prefix("PORT ") {
                return port.trim().parse().unwrap();
            }
        }
        panic!("the child store printed no port");
    })
    .await
    .unwrap();
    let client = crate::common::client_for(&format!("http://127.0.0.1:{port}"));

    #[derive(Default)]
    struct Seen {
        /// Acknowledged writes: key → body.
        stored: BTreeMap<String, Vec<u8>>,
        deleted: Vec<String>,
        acked: usize,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for t in 0..12 {
        let (client, seen) = (client.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("t{t:02}/{i:05}");
                let body = format!("{key} {}", "x".repeat(i % 700)).into_bytes();
                let put = client
                    .put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await;
                if put.is_err() {
                    return;
                }
                {
                    let mut s = seen.lock().unwrap();
                    s.stored.insert(key, body);
                    s.acked += 1;
                }
                if i % 4 == 3 {
                    let victim = format!("t{t:02}/{:05}", i - 2);
                    let deleted = client
                        .delete_object()
                        .bucket(BUCKET)
                        .key(&victim)
                        .send()
                        .await
                        .is_ok();
                    let mut s = seen.lock().unwrap();
                    // A delete that got no answer may or may not have
                    // happened before the kill: the victim is then neither
                    // an acknowledged write nor an acknowledged delete.
                    s.stored.remove(&victim);
                    if !deleted {
                        return;
                    }
                    s.deleted.push(victim);
                }
            }
        }));
    }
    loop {
        if seen.lock().unwrap().acked >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SIGKILL while the writers are still going.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    let s = serve_at(dir).await;
    let keys = listed(&s).await;
    for (key, body) in &seen.stored {
        let got = s
            .client
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged {key} lost: {e:?}"));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.as_ref(), body.as_slice(), "{key}");
    }
    for key in &seen.deleted {
        assert!(!s.exists(key).await, "acknowledged delete of {key} undone");
    }
    for key in &keys {
        let got = s
            .client
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("listed {key} unreadable: {e:?}"));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(bytes.starts_with(key.as_bytes()), "{key}");
    }
    assert!(keys.len() >= seen.stored.len());
    assert_eq!(
        data_files(&root).len(),
        keys.len(),
        "a data file per listed key, no orphan"
    );
}
