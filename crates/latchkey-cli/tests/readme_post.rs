//! The README's browser-form walkthrough (`curl -F`), extracted from
//! README.md and run as written against a real `latchkey serve`; and the
//! CLI's `--mode post` / `--mode headers` uploads against the same server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

fn post_walkthrough() -> String {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme
        .find("<!-- post-walkthrough:start -->")
        .expect("README marks the POST walkthrough");
    let end = readme.find("<!-- post-walkthrough:end -->").unwrap();
    let block = &readme[start..end];
    let code_start = block.find("```sh\n").unwrap() + "```sh\n".len();
    let code_end = block.rfind("```").unwrap();
    block[code_start..code_end].to_owned()
}

/// Kills the server when the test ends, however it ends.
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

fn serve(data: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env_remove("LATCHKEY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("broker:") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx.recv().unwrap();
    Server { child, url }
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn readme_post_form_walkthrough_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);

    let script = post_walkthrough()
        .replace("http://127.0.0.1:8080", &server.url)
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
    let stdout = ok(&out);
    assert!(stdout.contains("<PostResponse"), "{stdout}");
    assert!(stdout.contains(r#""status":"committed""#), "{stdout}");
    assert!(stdout.contains(r#""mode":"post""#), "{stdout}");
    let original = std::fs::read(format!("{TESTDATA}/small-gps.jpg")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("back.jpg")).unwrap(),
        original
    );
}

#[test]
fn cli_uploads_in_post_and_headers_modes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--data-dir")
            .arg(&data)
            .env("LATCHKEY_SERVER", &server.url)
            .env_remove("LATCHKEY_CONFIG");
        match token {
            Some(t) => cmd.env("LATCHKEY_TOKEN", t),
            None => cmd.env_remove("LATCHKEY_TOKEN"),
        };
        cmd.output().unwrap()
    };
    let token = ok(&run(&["token", "--user", "alice"], None));
    let token = token.trim();
    let photo = format!("{TESTDATA}/small-gps.jpg");
    let original = std::fs::read(&photo).unwrap();
    for mode in ["post", "headers"] {
        let out = ok(&run(
            &["upload", "--mode", mode, "--json", &photo],
            Some(token),
        ));
        let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(row["status"], "committed", "{out}");
        assert_eq!(row["mode"], mode, "{out}");
        let id = row["id"].as_str().unwrap();
        let back = dir.path().join(format!("{mode}.jpg"));
        ok(&run(
            &["get", id, "-o", back.to_str().unwrap()],
            Some(token),
        ));
        assert_eq!(std::fs::read(&back).unwrap(), original, "{mode}");
    }
}
