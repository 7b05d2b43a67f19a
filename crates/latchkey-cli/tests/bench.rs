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

    let pid = server.child.id().to_string();
    let cases: &[(&[&str], &str, usize, &[&str])] = &[
        (&["grants"], "grants", 1, &[]),
        (&["grants", "--pid", &pid], "grants", 1, &[]),
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
                "generator_cpu_ms_per_op",
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
        // The server's CPU per operation, only when its pid is given.
        let cpu = &measured[0]["server_cpu_ms_per_op"];
        if args.contains(&"--pid") {
            assert!(cpu.as_f64().unwrap() > 0.0, "{report}");
        } else {
            assert!(cpu.is_null(), "{report}");
        }
        assert!(!out.contains("X-Amz-Signature"), "no presigned URL printed");
        assert!(!out.contains(&token), "no token printed");
    }

    // The peer benches (`scripts/bench` runs them against Uppy Companion and
    // @tus/server too) against latchkey's own Companion routes and tus
    // endpoint. The Companion routes go through the upload-token URL Uppy
    // is given, whose path is a capability.
    let companion_url = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let v: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/uppy-token", server.url))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "profile": "file" }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        v["companion_url"].as_str().unwrap().to_owned()
    });
    let upload_token = companion_url.rsplit('/').next().unwrap().to_owned();
    let bearer = format!("authorization: Bearer {token}");
    let healthz = format!("{}/healthz", server.url);
    let tus = format!("{}/tus/", server.url);
    let peer_cases: Vec<(Vec<&str>, &str, usize, &[&str])> = vec![
        (vec!["http", "--url", &healthz], "http", 1, &[]),
        (
            vec!["uppy", "--endpoint", &companion_url, "--pid", &pid],
            "uppy",
            2,
            &["sign_part/params"],
        ),
        (
            vec![
                "tus",
                "--endpoint",
                &tus,
                "--header",
                &bearer,
                "--metadata",
                "profile=file",
                "--metadata",
                "filename=b.bin",
                "--size",
                "6MiB",
                "--chunk",
                "4MiB",
            ],
            "tus",
            1,
            &[],
        ),
    ];
    for (args, bench, phases, ratios) in peer_cases {
        let mut all = vec!["bench"];
        all.extend_from_slice(&args);
        all.extend(["--connections", "2", "--duration", "1s", "--json"]);
        let out = stdout_of(latchkey(dir.path(), &all));
        let report: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"));
        assert_eq!(report["bench"], bench, "{report}");
        assert_eq!(report["server"], server.url.as_str(), "the origin only");
        let measured = report["measured"].as_array().expect("measured");
        assert_eq!(measured.len(), phases, "{report}");
        for m in measured {
            assert!(
                m["ops"].as_u64().unwrap() > 0,
                "something was measured: {m}"
            );
            assert_eq!(m["errors"], 0, "{m}");
            assert!(m["generator_cpu_ms_per_op"].is_number(), "{m}");
        }
        for r in ratios {
            assert!(report["ratios"][r].is_number(), "{r} in {report}");
        }
        if bench == "uppy" {
            for m in measured {
                // Thousands of requests cost the server some CPU.
                assert!(m["server_cpu_ms_per_op"].as_f64().unwrap() > 0.0, "{m}");
            }
        } else {
            assert!(
                measured[0].get("server_cpu_ms_per_op").is_none(),
                "no --pid"
            );
        }
        if bench == "tus" {
            let m = &measured[0];
            assert_eq!(m["label"], "tus POST + 2 PATCH", "{m}");
            assert!(m["mib_per_s"].as_f64().unwrap() > 0.0, "{m}");
        }
        assert!(!out.contains(&token), "no token printed");
        assert!(!out.contains(&upload_token), "no upload token printed");
        assert!(!out.contains("X-Amz-Signature"), "no presigned URL printed");
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
    for peer in [
        &["http", "--url", "http://192.0.2.1/"][..],
        &["uppy", "--endpoint", "http://192.0.2.1:3020"],
        &["tus", "--endpoint", "http://192.0.2.1/files"],
    ] {
        let mut all = vec!["bench"];
        all.extend_from_slice(peer);
        all.extend(["--duration", "1s"]);
        let out = latchkey(dir.path(), &all);
        assert!(!out.status.success(), "{peer:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("loopback"),
            "{peer:?}"
        );
    }
}
