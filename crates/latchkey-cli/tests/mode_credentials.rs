//! `latchkey upload --mode credentials`: the real binary against a real
//! `latchkey serve` (embedded store) signs its own PUT with the scoped
//! temporary credentials the broker grants, and the file comes back whole.

mod support;

use support::{BIN, Server, serve};

use std::path::Path;
use std::process::{Command, Output};

fn run(data: &Path, server: &Server, token: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--data-dir")
        .arg(data)
        .env("LATCHKEY_SERVER", &server.url)
        .env_remove("LATCHKEY_CONFIG");
    match token {
        Some(t) => cmd.env("LATCHKEY_TOKEN", t),
        None => cmd.env_remove("LATCHKEY_TOKEN"),
    };
    let out: Output = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn credentials_upload_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let token = run(&data, &server, None, &["token", "--user", "alice"]);
    let token = token.trim();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let file = dir.path().join("notes.bin");
    std::fs::write(&file, &bytes).unwrap();

    let out = run(
        &data,
        &server,
        Some(token),
        &[
            "upload",
            "--json",
            "--profile",
            "file",
            "--mode",
            "credentials",
            file.to_str().unwrap(),
        ],
    );
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(row["status"], "committed", "{row}");
    assert_eq!(row["mode"], "credentials");
    assert!(row["key"].as_str().unwrap().starts_with("u/alice/file/"));
    let dest = dir.path().join("back.bin");
    run(
        &data,
        &server,
        Some(token),
        &[
            "get",
            row["id"].as_str().unwrap(),
            "-o",
            dest.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(dest).unwrap() == bytes, "bytes differ");
}
