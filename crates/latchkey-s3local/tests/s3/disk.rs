//! Durability across restarts and cleanup of what a crash leaves behind.

use aws_sdk_s3::primitives::ByteStream;

use crate::common::{BUCKET, code, complete_one_part, md5_hex, one_part_upload, serve_at};

#[tokio::test]
async fn reopen_sees_objects_and_cleans_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut s = serve_at(dir).await;
    for key in ["a", "a/b", "z/ü"] {
        s.client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .content_type("text/plain")
            .metadata("k", key.len().to_string())
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("a/b")
        .send()
        .await
        .unwrap();
    let dir = s.dir.take().unwrap();
    s.handle.shutdown().await;

    // What a crash mid-upload leaves: a temp file and an unreferenced data file.
    std::fs::write(root.join("tmp").join("half-upload"), b"partial").unwrap();
    let fanout = std::fs::read_dir(root.join("objects"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = fanout.join("deadbeef.0000.data");
    std::fs::write(&orphan, b"orphan").unwrap();

    let s = serve_at(dir).await;
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert!(!orphan.exists());

    let listed = s
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["a", "z/ü"]);
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("z/ü")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.e_tag(),
        Some(format!("\"{}\"", md5_hex("z/ü".as_bytes())).as_str())
    );
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(
        head.metadata().unwrap().get("k").map(String::as_str),
        Some("4")
    );
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"a"
    );
}

/// What a crash in the middle of removing a completed upload's folder left
/// (with the removal done file by file, as before it became one rename): the
/// `upload.json` and a part's JSON, the part's bytes gone. Such an upload can
/// never complete, so the next open drops it; before, every CompleteMultipartUpload
/// of it answered 500 and the broker retried it forever.
#[tokio::test]
async fn reopen_drops_an_upload_whose_parts_are_half_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut s = serve_at(dir).await;
    let mut ids = Vec::new();
    let mut etags = Vec::new();
    for key in ["whole", "broken"] {
        let (id, etag) = one_part_upload(&s.client, key, b"part one".to_vec()).await;
        ids.push(id);
        etags.push(etag);
    }
    let dir = s.dir.take().unwrap();
    s.handle.shutdown().await;
    let broken = root.join("uploads").join(&ids[1]);
    let part_data: Vec<_> = std::fs::read_dir(&broken)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert_eq!(part_data.len(), 1, "one part file in {}", broken.display());
    std::fs::remove_file(&part_data[0]).unwrap();

    let s = serve_at(dir).await;
    assert!(!broken.exists(), "the broken upload's folder is removed");
    let listed = s
        .client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let open: Vec<_> = listed.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(open, vec!["whole"]);
    let err = s
        .client
        .list_parts()
        .bucket(BUCKET)
        .key("broken")
        .upload_id(&ids[1])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");

    // Completing the whole one removes its folder, leaving nothing in tmp/.
    complete_one_part(&s.client, "whole", &ids[0], &etags[0]).await;
    assert!(!root.join("uploads").join(&ids[0]).exists());
    assert_eq!(std::fs::read_dir(root.join("uploads")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

/// Bodies of 4 MiB and more (objects and parts) leave the page cache once
/// written; smaller ones, which are read back soon, stay.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn large_bodies_leave_the_page_cache_once_written() {
    let s = crate::common::start().await;
    let (big, part, small) = (6 << 20, 5 << 20, 256 << 10);
    for (key, len) in [("big", big), ("small", small)] {
        s.client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(vec![7u8; len]))
            .send()
            .await
            .unwrap();
    }
    one_part_upload(&s.client, "parted", vec![9u8; part]).await;

    for (len, cached) in [(big, false), (part, false), (small, true)] {
        let file = file_of_len(s.root(), len as u64);
        let (resident, pages) = resident_pages(&file);
        if cached {
            assert_eq!(resident, pages, "{} stays cached", file.display());
        } else {
            assert!(
                resident * 10 < pages,
                "{}: {resident} of {pages} pages cached",
                file.display()
            );
        }
    }
}

/// The one file under `root` that is `len` bytes long.
#[cfg(target_os = "linux")]
fn file_of_len(root: &std::path::Path, len: u64) -> std::path::PathBuf {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.len() == len {
                found.push(entry.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "files of {len} bytes: {found:?}");
    found.pop().unwrap()
}

/// How many of `path`'s pages are in the page cache, of how many (mincore
/// on a mapping, which itself reads nothing in).
#[cfg(target_os = "linux")]
fn resident_pages(path: &std::path::Path) -> (usize, usize) {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: a fresh read-only shared mapping of the whole file, unmapped
    // before returning; `vec` has one byte per page as mincore needs.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        let mut vec = vec![0u8; len.div_ceil(page)];
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        assert_eq!(rc, 0);
        (vec.iter().filter(|b| **b & 1 != 0).count(), vec.len())
    }
}
