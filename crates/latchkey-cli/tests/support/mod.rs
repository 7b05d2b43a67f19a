//! What the CLI tests share: the real `latchkey serve` on loopback ports the
//! OS picks, read off its start-up banner, and stopped when dropped.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

/// A running `latchkey serve`; killed when dropped, however the test ends.
pub struct Server {
    child: Child,
    /// The broker's URL.
    pub url: String,
    /// The embedded store's URL.
    pub store: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `latchkey serve` on a data dir, both listeners on port 0.
pub fn serve(data_dir: &Path) -> Server {
    serve_with(
        [
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--store-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
        &[],
    )
}

/// `latchkey serve ARGS…` with extra environment variables. The config must
/// make it listen on port 0 (or free ports).
pub fn serve_with<'a>(args: impl IntoIterator<Item = &'a OsStr>, envs: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args).env_remove("LATCHKEY_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("latchkey serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stdout for the server's whole life: a closed pipe must
    // not be what stops it.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            for label in ["broker:", "S3 store:"] {
                if let Some(rest) = line.trim().strip_prefix(label) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        }
    });
    let url = rx.recv().expect("serve prints the broker URL");
    let store = rx.recv().expect("serve prints the store URL");
    Server { child, url, store }
}

/// The command's stdout, after checking it succeeded (else a readable panic).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}
