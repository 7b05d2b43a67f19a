//! `latchkey bench` against a real `latchkey serve`: every subcommand runs for
//! about a second and prints the JSON report. Only the shape is checked —
//! never the numbers, which depend on the machine and its load.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

fn serve(dir: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(dir.join("bench.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
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

fn latchkey(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir.join("bench.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("LATCHKEY_CONFIG")
        .env_remove("LATCHKEY_TOKEN")
        .env_remove("LATCHKEY_SERVER")
        .output()
        .expect("latchkey runs")
}

fn stdout_of(out: std::process::Output) -> String {
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
fn every_bench_subcommand_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bench.toml"),
        "[limits]\ngrants_per_minute = 0\n",
    )
    .unwrap();
    let server = serve(dir.path());
    let token = stdout_of(latchkey(dir.path(), &["token", "--user", "bench"]))
        .trim()
        .to_owned();

    let cases: &[(&[&str], &str, usize, &[&str])] = &[
        (&["grants"], "grants", 1, &[]),
        (&["flow", "--mode", "put"], "flow", 2, &["flow/bare_put"]),
        (&["flow", "--mode", "proxy"], "flow", 2, &["flow/bare_put"]),
        (&["flow", "--mode", "post", "--no-baseline"], "flow", 1, &[]),
        (&["proxy", "--size", "2MiB"], "proxy", 2, &["proxy/direct"]),
        (
            &["store", "--size", "64KiB", "--objects", "16"],
            "store",
            2,
            &["get/put"],
        ),
    ];
    for (args, bench, phases, ratios) in cases {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        all.extend([
            "--server",
            &server.url,
            "--token",
            &token,
            "--connections",
            "2",
            "--duration",
            "1s",
            "--json",
        ]);
        let out = stdout_of(latchkey(dir.path(), &all));
        let report: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"));
        assert_eq!(report["bench"], *bench, "{report}");
        assert_eq!(report["connections"], 2);
        let measured = report["measured"].as_array().expect("measured");
        assert_eq!(measured.len(), *phases, "{report}");
        for m in measured {
            for field in [
                "ops",
                "errors",
                "elapsed_s",
                "ops_per_s",
                "mib_per_s",
                "p50_ms",
                "p99_ms",
            ] {
                assert!(m[field].is_number(), "{field} in {m}");
            }
            assert!(m["label"].is_string());
            assert!(
                m["ops"].as_u64().unwrap() > 0,
                "something was measured: {m}"
            );
            assert_eq!(m["errors"], 0, "{m}");
        }
        for r in *ratios {
            assert!(report["ratios"][r].is_number(), "{r} in {report}");
        }
        assert!(!out.contains("X-Amz-Signature"), "no presigned URL printed");
        assert!(!out.contains(&token), "no token printed");
    }

    // A non-loopback target is refused before anything is sent.
    let out = latchkey(
        dir.path(),
        &[
            "bench",
            "grants",
            "--server",
            "http://192.0.2.1:8080",
            "--token",
            &token,
            "--duration",
            "1s",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
