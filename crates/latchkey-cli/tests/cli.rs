//! The README's walkthrough, run as a new user would: the real `latchkey`
//! binary serving on loopback, then `token`, `upload`, `ls`, `get`, `rm`.

mod support;

use support::{BIN, Server, TESTDATA, ok, serve};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn latchkey(data_dir: &Path, server: &Server, token: Option<&str>, args: &[&str]) -> Output {
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
    cmd.output().expect("latchkey runs")
}

#[test]
fn readme_walkthrough_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);

    let token = ok(&latchkey(
        &data,
        &server,
        None,
        &["token", "--user", "alice"],
    ))
    .trim()
    .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let photo = PathBuf::from(TESTDATA).join("small-gps.jpg");
    let out = ok(&latchkey(
        &data,
        &server,
        Some(&token),
        &["upload", "--json", photo.to_str().unwrap()],
    ));
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(row["status"], "committed");
    assert_eq!(row["filename"], "small-gps.jpg");
    let id = row["id"].as_str().unwrap().to_owned();

    let listed = ok(&latchkey(&data, &server, Some(&token), &["ls", "--json"]));
    assert!(listed.contains(&id), "{listed}");

    let dest = dir.path().join("out.jpg");
    ok(&latchkey(
        &data,
        &server,
        Some(&token),
        &["get", &id, "-o", dest.to_str().unwrap()],
    ));
    // The photo profile serves the photo re-written without its metadata.
    let served = std::fs::read(&dest).unwrap();
    assert!(served.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(served.len() < std::fs::read(&photo).unwrap().len());
    assert!(
        !served.windows(6).any(|w| w == b"Exif\0\0"),
        "no EXIF (GPS) left"
    );

    let removed = ok(&latchkey(
        &data,
        &server,
        Some(&token),
        &["rm", "--json", &id],
    ));
    assert!(removed.contains("\"deleted\""), "{removed}");

    // Failures exit non-zero with the problem's message.
    let svg = PathBuf::from(TESTDATA).join("script.svg");
    let out = latchkey(
        &data,
        &server,
        Some(&token),
        &["upload", svg.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("type_not_allowed"),
        "{out:?}"
    );
    let out = latchkey(&data, &server, None, &["ls"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unauthorized"),
        "{out:?}"
    );
}

#[test]
fn tokens_survive_a_restart_and_config_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = {
        let server = serve(&data);
        ok(&latchkey(
            &data,
            &server,
            None,
            &["token", "--user", "alice"],
        ))
        .trim()
        .to_owned()
    };
    let server = serve(&data);
    ok(&latchkey(&data, &server, Some(&token), &["ls"]));

    let secrets = std::fs::read_to_string(data.join("secrets.toml")).unwrap();
    let config = ok(&latchkey(&data, &server, None, &["config"]));
    for line in secrets.lines() {
        let value = line.split('=').nth(1).unwrap().trim().trim_matches('"');
        assert!(!config.contains(value), "config printed a secret");
    }
    assert!(config.contains("[server]"), "{config}");

    let out = Command::new(BIN)
        .args(["config", "--data-dir"])
        .arg(&data)
        .env("LATCHKEY_AUTH__JWT_SECRET", "configured-hs256-secret")
        .env("LATCHKEY_STORE__BUCKET", "photos")
        .output()
        .unwrap();
    let config = ok(&out);
    assert!(!config.contains("configured-hs256-secret"), "{config}");
    assert!(config.contains("jwt_secret = \"[redacted]\""), "{config}");
    assert!(config.contains("bucket = \"photos\""), "{config}");
}

#[test]
fn store_check_probes_the_running_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);
    let listen = server.store.trim_start_matches("http://").to_owned();
    let out = Command::new(BIN)
        .args(["store", "check", "--json", "--data-dir"])
        .arg(&data)
        .env("LATCHKEY_STORE__LISTEN", &listen)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let caps = &report["capabilities"];
    for cap in [
        "if_none_match",
        "checksum_sha256",
        "post_object",
        "multipart",
    ] {
        assert_eq!(caps[cap], true, "{cap}: {report:#}");
    }
    // With the store stopped the check fails and says what to do.
    drop(server);
    let out = Command::new(BIN)
        .args(["store", "check", "--data-dir"])
        .arg(&data)
        .env("LATCHKEY_STORE__LISTEN", &listen)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("latchkey serve"),
        "{out:?}"
    );
}
