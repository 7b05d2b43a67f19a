//! The README's curl walkthrough, extracted from README.md and run as
//! written against a real `latchkey serve`, so the documentation cannot rot.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

fn walkthrough() -> String {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("README marks the walkthrough");
    let end = readme.find("<!-- walkthrough:end -->").unwrap();
    let block = &readme[start..end];
    let code_start = block.find("```sh\n").unwrap() + "```sh\n".len();
    let code_end = block.rfind("```").unwrap();
    block[code_start..code_end].to_owned()
}

#[test]
fn readme_curl_walkthrough_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = server.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("broker:") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx.recv().unwrap();

    let script = walkthrough()
        .replace("http://127.0.0.1:8080", &url)
        .replace("../shared/testdata", TESTDATA);
    let prelude = format!(
        "set -euo pipefail\nlatchkey() {{ {BIN:?} \"$@\" --data-dir {:?}; }}\n",
        data.display().to_string()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""status":"committed""#), "{stdout}");
    assert!(stdout.contains(r#""status":"deleted""#), "{stdout}");
    let original = std::fs::read(format!("{TESTDATA}/small-gps.jpg")).unwrap();
    // The photo profile serves the photo re-written without its metadata.
    let served = std::fs::read(dir.path().join("out.jpg")).unwrap();
    assert!(served.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(served.len() < original.len(), "smaller than what was sent");
    assert!(
        !served.windows(6).any(|w| w == b"Exif\0\0"),
        "no EXIF (GPS) left"
    );
}
