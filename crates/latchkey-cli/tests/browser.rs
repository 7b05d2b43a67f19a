//! The browser tests: the real `latchkey serve` (embedded default, dev
//! mode) and headless Chromium driven by playwright-core from
//! `e2e-js/browser.mjs` — the demo page in each mode, and the real Uppy in
//! each of its three backend modes (DESIGN §5, §8). Screenshots of the demo
//! page go to `target/screenshots/`.
//!
//! This fails, not skips, when Node, `e2e-js/node_modules` or Chromium are
//! missing: `scripts/test` installs them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `latchkey serve` on free ports and answers its broker URL.
fn serve(data: &Path) -> (Serve, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.with_extension("log")).expect("log file"))
        .spawn()
        .expect("latchkey serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("broker:") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve printed its broker URL");
    (Serve(child), url)
}

#[test]
fn demo_page_and_uppy_in_chromium() {
    let e2e = repo().join("e2e-js");
    assert!(
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "node is missing: the browser tests need Node.js (scripts/test checks for it)"
    );
    assert!(
        e2e.join("node_modules/playwright-core").is_dir()
            && e2e.join("node_modules/@uppy/aws-s3").is_dir(),
        "e2e-js/node_modules is missing: run `npm ci` in e2e-js/ (scripts/test does)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_serve, url) = serve(&data);
    let shots = repo().join("target/screenshots");
    let photo = repo().join("../shared/testdata/iphone-12mp-gps-orient6.jpg");
    assert!(photo.exists(), "{} is missing", photo.display());
    let status = Command::new("node")
        .arg("browser.mjs")
        .current_dir(&e2e)
        .env("LATCHKEY_URL", &url)
        .env("SCREENSHOT_DIR", &shots)
        .env("PHOTO", &photo)
        .env("CHROMIUM", CHROMIUM)
        .status()
        .expect("node runs");
    if !status.success() {
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "browser tests failed ({status}); last lines of the broker's log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!("screenshots of the demo page: {}", shots.display());
}
