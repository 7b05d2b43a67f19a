//! Multipart objects kept as their parts: a folder of pieces instead of a
//! concatenated copy. Reads, ranges, copies, overwrites under a running
//! GET, and the repair at open must not tell the difference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, CompletedMultipartUpload, CompletedPart};

use crate::common::{BUCKET, TestStore, serve_at, sha256_b64, sha256_hex, start};

const MIB: usize = 1024 * 1024;

/// Two full parts and a short last one, every byte telling where it is.
fn three_parts(seed: u8) -> Vec<Vec<u8>> {
    parts(seed, &[5 * MIB, 5 * MIB, 1000])
}

fn parts(seed: u8, sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(p, &len)| {
            (0..len)
                .map(|i| (i % 251) as u8 ^ (p as u8).wrapping_mul(77) ^ seed)
                .collect()
        })
        .collect()
}

async fn upload_parts(client: &Client, key: &str, parts: &[Vec<u8>]) {
    let sends: Vec<(i32, &Vec<u8>)> = (1..).zip(parts).collect();
    upload_as_sent(client, key, &sends).await;
}

/// A multipart upload of the parts in the order given (a number again
/// replaces that part), completed with every number sent.
async fn upload_as_sent(client: &Client, key: &str, sends: &[(i32, &Vec<u8>)]) {
    let id = client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut etags = std::collections::BTreeMap::new();
    for &(n, data) in sends {
        let up = client
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        etags.insert(n, up.e_tag().unwrap().to_owned());
    }
    let mut done = CompletedMultipartUpload::builder();
    for (n, etag) in &etags {
        done = done.parts(CompletedPart::builder().part_number(*n).e_tag(etag).build());
    }
    client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(done.build())
        .send()
        .await
        .unwrap();
}

async fn get_range(s: &TestStore, key: &str, range: Option<&str>) -> Vec<u8> {
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .set_range(range.map(str::to_owned))
        .send()
        .await
        .unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Whether `done` becomes true soon. Replaced data is removed on a
/// blocking thread after the write that replaced it has been answered.
async fn settles(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// The data entries (files or folders) under `objects/` for `key`.
fn data_of(root: &Path, key: &str) -> Vec<PathBuf> {
    let h = sha256_hex(key.as_bytes());
    let fanout = root.join("objects").join(&h[..2]);
    let Ok(entries) = std::fs::read_dir(fanout) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&h))
        .collect()
}

#[tokio::test]
async fn a_multipart_object_is_its_parts_and_reads_across_them() {
    let s = start().await;
    let parts = three_parts(0);
    let whole = parts.concat();
    upload_parts(&s.client, "clip", &parts).await;

    let data = data_of(s.root(), "clip");
    assert_eq!(data.len(), 1, "{data:?}");
    assert!(data[0].is_dir(), "kept as a folder of pieces: {data:?}");
    let pieces: Vec<u64> = (1..=3)
        .map(|n| {
            std::fs::metadata(data[0].join(n.to_string()))
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(pieces, [5 * MIB as u64, 5 * MIB as u64, 1000]);

    assert_eq!(get_range(&s, "clip", None).await, whole);
    let total = whole.len();
    let five = 5 * MIB;
    for (range, want) in [
        (format!("bytes=0-{}", five - 1), 0..five),
        (
            format!("bytes={}-{}", five - 3, five + 2),
            five - 3..five + 3,
        ),
        (format!("bytes={}-", five + 17), five + 17..total),
        (
            format!("bytes={}-{}", 2 * five - 1, 2 * five),
            2 * five - 1..2 * five + 1,
        ),
        ("bytes=-10".to_owned(), total - 10..total),
        ("bytes=7-7".to_owned(), 7..8),
    ] {
        assert_eq!(
            get_range(&s, "clip", Some(&range)).await,
            &whole[want],
            "{range}"
        );
    }
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("clip")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(total as i64));
    assert_eq!(head.checksum_sha256(), Some(sha256_b64(&whole).as_str()));
    assert_eq!(head.parts_count(), Some(3));
}

#[tokio::test]
async fn a_copy_outlives_its_source() {
    let s = start().await;
    let whole = three_parts(1).concat();
    upload_parts(&s.client, "src", &three_parts(1)).await;
    s.client
        .copy_object()
        .bucket(BUCKET)
        .key("dst")
        .copy_source(format!("{BUCKET}/src"))
        .send()
        .await
        .unwrap();
    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("src")
        .send()
        .await
        .unwrap();
    assert!(
        settles(|| data_of(s.root(), "src").is_empty()).await,
        "the source is gone"
    );
    assert!(data_of(s.root(), "dst")[0].is_dir());
    assert_eq!(get_range(&s, "dst", None).await, whole);
}

/// A GET that has begun reads the version it began with to the end, even
/// when that object is overwritten twice meanwhile; its pieces are removed
/// once the GET is done.
#[tokio::test]
async fn an_overwrite_waits_for_a_get_under_way() {
    let s = start().await;
    // Larger than what the loopback socket and the client buffer, so the
    // GET is still reading pieces when the overwrites land.
    let big = parts(
        2,
        &[5 * MIB, 5 * MIB, 5 * MIB, 5 * MIB, 5 * MIB, 5 * MIB, 1000],
    );
    let old = big.concat();
    upload_parts(&s.client, "photo", &big).await;
    let folder = data_of(s.root(), "photo").pop().unwrap();

    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("photo")
        .send()
        .await
        .unwrap();
    let mut body = got.body;
    let first = body.next().await.unwrap().unwrap();

    upload_parts(&s.client, "photo", &three_parts(3)).await;
    s.client
        .put_object()
        .bucket(BUCKET)
        .key("photo")
        .body(ByteStream::from_static(b"small"))
        .send()
        .await
        .unwrap();
    assert!(folder.join("7").is_file(), "still being read");

    let mut read = first.to_vec();
    while let Some(chunk) = body.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read.len(), old.len());
    assert!(read == old, "the GET read the version it began with");
    drop(body);

    assert!(
        settles(|| !folder.exists()).await,
        "removed after the last reader"
    );
    assert_eq!(data_of(s.root(), "photo").len(), 1);
    assert_eq!(get_range(&s, "photo", None).await, b"small");
}

/// At open, a folder the index names is kept, and one it does not name (a
/// crash before its row was committed, or before a replaced folder was
/// removed) is removed.
#[tokio::test]
async fn reopen_keeps_named_folders_and_removes_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut s = serve_at(dir).await;
    let whole = three_parts(4).concat();
    upload_parts(&s.client, "kept", &three_parts(4)).await;
    let dir = s.dir.take().unwrap();
    s.handle.shutdown().await;

    let h = sha256_hex(b"orphan");
    let orphan = root
        .join("objects")
        .join(&h[..2])
        .join(format!("{h}.0123456789abcdef0123456789abcdef.parts"));
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("1"), b"half").unwrap();

    let s = serve_at(dir).await;
    assert!(!orphan.exists(), "an unnamed folder is removed");
    assert_eq!(get_range(&s, "kept", None).await, whole);
    assert!(data_of(&root, "kept")[0].is_dir());
}

/// The object's SHA-256 is taken while its parts arrive in order, and
/// must come out right however they arrived: in order, out of order, or
/// with a part uploaded again after later ones.
#[tokio::test]
async fn the_sha256_is_right_however_the_parts_arrived() {
    let s = start().await;
    let [a, b, c]: [Vec<u8>; 3] = three_parts(5).try_into().unwrap();
    let b2: Vec<u8> = b.iter().map(|x| x ^ 0x5a).collect();
    // (key, the parts as uploaded, the object they make)
    type Case<'a> = (&'a str, Vec<(i32, &'a Vec<u8>)>, Vec<u8>);
    let cases: [Case; 3] = [
        (
            "in-order",
            vec![(1, &a), (2, &b), (3, &c)],
            [&a[..], &b, &c].concat(),
        ),
        (
            "shuffled",
            vec![(2, &b), (1, &a), (3, &c)],
            [&a[..], &b, &c].concat(),
        ),
        (
            "redone",
            vec![(1, &a), (2, &b), (3, &c), (2, &b2)],
            [&a[..], &b2, &c].concat(),
        ),
    ];
    for (key, sends, whole) in cases {
        upload_as_sent(&s.client, key, &sends).await;
        let head = s
            .client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.checksum_sha256(),
            Some(sha256_b64(&whole).as_str()),
            "{key}"
        );
        assert_eq!(get_range(&s, key, None).await, whole, "{key}");
    }
}
