//! The README's browser-form walkthrough (`curl -F`), extracted from
//! README.md and run as written against a real `latchkey serve`; and the
//! CLI's `--mode post` / `--mode headers` uploads against the same server.

mod support;

use support::{BIN, TESTDATA, ok, serve};

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

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
    // The photo profile serves the photo re-written without its metadata.
    let served = std::fs::read(dir.path().join("back.jpg")).unwrap();
    assert!(served.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(served.len() < original.len(), "smaller than what was sent");
    assert!(
        !served.windows(6).any(|w| w == b"Exif\0\0"),
        "no EXIF (GPS) left"
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
            // The `file` profile stores the bytes as sent.
            &[
                "upload",
                "--profile",
                "file",
                "--mode",
                mode,
                "--json",
                &photo,
            ],
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
