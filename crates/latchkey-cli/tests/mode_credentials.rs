//! `latchkey upload --mode credentials`: the real binary against a real
//! `latchkey serve` (embedded store) signs its own PUT with the scoped
//! temporary credentials the broker grants, and the file comes back whole.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("LATCHKEY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("latchkey serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("broker:") {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let url = rx.recv().expect("serve prints the broker URL");
    Server { child, url }
}

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
