//! `latchkey upload --mode multipart|proxy` and `--resume`, with the real
//! binary against a real `latchkey serve`, and `curl` as the client that
//! starts an upload and leaves it half done.

mod support;

use support::{BIN, Server, ok};

/// `latchkey serve` with 5 MiB parts, so the test files have several.
fn serve(data_dir: &Path) -> Server {
    support::serve_with(
        [
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--store-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
        &[("LATCHKEY_LIMITS__PART_SIZE", "5MiB")],
    )
}

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const MIB: usize = 1024 * 1024;

fn latchkey(data_dir: &Path, server: &Server, token: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("LATCHKEY_SERVER", &server.url)
        .env_remove("LATCHKEY_CONFIG");
    match token {
        Some(t) => cmd.env("LATCHKEY_TOKEN", t),
        None => cmd.env_remove("LATCHKEY_TOKEN"),
    };
    cmd
}

fn run(cmd: &mut Command) -> String {
    ok(&cmd.output().expect("runs"))
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn token(data: &Path, server: &Server) -> String {
    run(&mut latchkey(
        data,
        server,
        None,
        &["token", "--user", "alice"],
    ))
    .trim()
    .to_owned()
}

fn get_back(data: &Path, server: &Server, token: &str, id: &str, dest: &Path) -> Vec<u8> {
    run(&mut latchkey(
        data,
        server,
        Some(token),
        &["get", id, "-o", dest.to_str().unwrap()],
    ));
    std::fs::read(dest).unwrap()
}

#[test]
fn multipart_and_proxy_uploads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let token = token(&data, &server);
    let bytes = noise(13 * MIB + 77, 1);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();

    for (mode, extra) in [("multipart", &["--parallel", "3"][..]), ("proxy", &[][..])] {
        let mut args = vec!["upload", "--json", "--profile", "file", "--mode", mode];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        let out = run(&mut latchkey(&data, &server, Some(&token), &args));
        let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(row["status"], "committed", "{mode}");
        assert_eq!(row["mode"], mode);
        let id = row["id"].as_str().unwrap();
        let back = get_back(
            &data,
            &server,
            &token,
            id,
            &dir.path().join(format!("{mode}.out")),
        );
        assert!(back == bytes, "{mode}: bytes differ");
    }
}

/// curl starts a multipart upload and sends only its second part; the CLI
/// resumes it, sending the rest, and the file comes back whole.
#[test]
fn resume_sends_only_the_missing_parts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let token = token(&data, &server);
    let bytes = noise(12 * MIB + 5, 2);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };

    let body = serde_json::json!({
        "profile": "file", "filename": "big.bin", "content_type": "application/octet-stream",
        "size": bytes.len(), "sha256": sha, "mode": "multipart",
    });
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "POST"])
        .arg(format!("{}/v1/uploads", server.url))
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .unwrap();
    let created: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let id = created["id"].as_str().unwrap();
    let part2 = &created["grant"]["multipart"]["parts"][1];
    let chunk = dir.path().join("part2");
    std::fs::File::create(&chunk)
        .unwrap()
        .write_all(&bytes[5 * MIB..10 * MIB])
        .unwrap();
    let put = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--upload-file"])
        .arg(&chunk)
        .arg(part2["url"].as_str().unwrap())
        .output()
        .unwrap();
    ok(&put);

    let out = run(&mut latchkey(
        &data,
        &server,
        Some(&token),
        &["upload", "--json", "--resume", id, file.to_str().unwrap()],
    ));
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(row["status"], "committed");
    let back = get_back(&data, &server, &token, id, &dir.path().join("out"));
    assert!(back == bytes, "bytes differ");

    // Resuming a committed upload is refused.
    let again = latchkey(
        &data,
        &server,
        Some(&token),
        &["upload", "--resume", id, file.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(!again.status.success());
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A 1 GiB multipart upload keeps the CLI's memory flat: its peak RSS,
/// sampled while it runs, stays far below the file size. Run on demand:
/// `cargo test -p latchkey-cli --test modes_multipart_proxy -- --ignored`.
#[test]
#[ignore = "moves 1 GiB; run on demand"]
fn a_one_gib_multipart_upload_keeps_cli_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let token = token(&data, &server);
    let file = dir.path().join("huge.bin");
    // Sparse: no disk or memory spent making it.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut child = latchkey(
        &data,
        &server,
        Some(&token),
        &[
            "upload",
            "--json",
            "--profile",
            "file",
            "--mode",
            "multipart",
            file.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(hwm) = rss_kib(pid, "VmHWM:") {
            peak = peak.max(hwm);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = ok(&out);
    let row: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(row["status"], "committed");
    eprintln!("CLI peak RSS: {peak} KiB");
    assert!(peak > 0 && peak < 96 * 1024, "CLI peak RSS {peak} KiB");
}
