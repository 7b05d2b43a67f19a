//! Every file of `../shared/testdata/` through the pipeline, in process and
//! in the isolated worker, checked with a second EXIF reader
//! (`kamadak-exif`) and by decoding what comes out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use latchkey_media::{
    Isolation, Job, Options, Processed, RejectCode, WorkerReply, process, run_isolated,
};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn run(
    name: &str,
    declared: &str,
) -> (
    Result<Processed, latchkey_media::Rejection>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = process(&read(name), declared, &Options::default(), dir.path());
    (out, dir)
}

/// No EXIF at all by the second reader, and no GPS/XMP/IPTC markers in the
/// raw bytes either.
fn assert_clean(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&bytes));
    assert!(
        // GIF is a container the second reader does not know.
        matches!(
            exif,
            Err(exif::Error::NotFound(_) | exif::Error::InvalidFormat("Unknown image format"))
        ),
        "{}: EXIF left: {:?}",
        path.display(),
        exif.map(|e| e.fields().count())
    );
    for needle in [
        &b"Exif\0\0"[..],
        b"http://ns.adobe.com/xap",
        b"Photoshop 3.0",
        b"eXIf",
        b"<?php",
        b"PK\x03\x04",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{}: {:?} left",
            path.display(),
            String::from_utf8_lossy(needle)
        );
    }
}

fn open(path: &Path) -> image::DynamicImage {
    image::ImageReader::open(path)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap()
}

fn dims(path: &Path) -> (u32, u32) {
    let img = open(path);
    (img.width(), img.height())
}

fn assert_all_clean(p: &Processed) {
    assert_clean(&p.original.path);
    for v in &p.variants {
        assert_clean(&v.path);
        let (w, h) = dims(&v.path);
        assert_eq!((w, h), (v.width, v.height));
    }
    assert!(!p.thumbhash.is_empty());
}

#[test]
fn iphone_photo_comes_out_upright_and_clean() {
    let src = read("iphone-12mp-gps-orient6.jpg");
    let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&src));
    println!(
        "the second reader on the source: {:?}",
        exif.as_ref().map(|e| e.fields().count())
    );
    assert!(src.windows(6).any(|w| w == b"Exif\0\0"));
    let (p, _dir) = run("iphone-12mp-gps-orient6.jpg", "image/jpeg");
    let p = p.unwrap();
    assert!(!p.lossless);
    assert_eq!(dims(&p.original.path), (3024, 4032));
    assert_eq!((p.original.width, p.original.height), (3024, 4032));
    let v: Vec<_> = p
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.width, v.height))
        .collect();
    assert_eq!(v, [("thumb", 192, 256), ("medium", 960, 1280)]);
    assert_all_clean(&p);
}

#[test]
fn small_jpeg_is_stripped_losslessly() {
    let (p, _dir) = run("small-gps.jpg", "image/jpeg");
    let p = p.unwrap();
    assert!(p.lossless);
    let before = image::load_from_memory(&read("small-gps.jpg")).unwrap();
    let after = open(&p.original.path);
    assert_eq!(before.as_bytes(), after.as_bytes(), "pixels changed");
    assert_eq!(dims(&p.original.path), (640, 480));
    assert_all_clean(&p);
}

#[test]
fn orientation_8_is_turned_upright() {
    let (p, _dir) = run("small-gps-orient8.jpg", "image/jpeg");
    let p = p.unwrap();
    assert_eq!(dims(&p.original.path), (640, 480));
    assert_all_clean(&p);
}

#[test]
fn png_webp_gif_are_cleaned() {
    for (name, ty) in [
        ("photo.png", "image/png"),
        ("photo.webp", "image/webp"),
        ("anim.gif", "image/gif"),
    ] {
        let (p, _dir) = run(name, ty);
        let p = p.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.original.content_type, ty);
        assert_all_clean(&p);
        if name != "anim.gif" {
            assert_eq!(dims(&p.original.path), (640, 480), "{name}");
        }
    }
}

#[test]
fn gif_keeps_every_frame() {
    use image::AnimationDecoder;
    let (p, _dir) = run("anim.gif", "image/gif");
    let p = p.unwrap();
    let file = std::fs::File::open(&p.original.path).unwrap();
    let frames = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 3);
}

#[test]
fn heic_is_served_as_clean_jpeg() {
    let (p, _dir) = run("photo.heic", "image/heic");
    let p = p.unwrap();
    assert_eq!(p.original.content_type, "image/jpeg");
    assert_eq!(dims(&p.original.path), (640, 480));
    assert!(p.variants.iter().all(|v| v.content_type == "image/jpeg"));
    assert_all_clean(&p);
}

#[test]
fn polyglot_loses_its_payload() {
    let src = read("polyglot.jpg");
    let (p, _dir) = run("polyglot.jpg", "image/jpeg");
    let p = p.unwrap();
    let out = std::fs::read(&p.original.path).unwrap();
    assert!(out.len() < src.len());
    assert!(out.ends_with(&[0xFF, 0xD9]));
    assert_all_clean(&p);
}

#[test]
fn hostile_and_wrong_files_are_rejected() {
    for (name, declared, code) in [
        ("bomb-900mp.png", "image/png", RejectCode::TooManyPixels),
        ("truncated.jpg", "image/jpeg", RejectCode::DecodeFailed),
        ("html-as-jpg.jpg", "image/jpeg", RejectCode::NotAnImage),
        ("script.svg", "image/svg+xml", RejectCode::NotAnImage),
        ("script.svg", "image/jpeg", RejectCode::NotAnImage),
        ("photo.png", "image/jpeg", RejectCode::TypeMismatch),
        ("small-gps.jpg", "image/png", RejectCode::TypeMismatch),
    ] {
        let (p, dir) = run(name, declared);
        let r = p.err().unwrap_or_else(|| panic!("{name} was accepted"));
        assert_eq!(r.code, code, "{name}: {r}");
        drop(dir);
    }
    // Its APP1 segment claims more bytes than the file has, and its frame
    // header claims 65500x65500: refused either way, before decoding.
    let (p, _dir) = run("bomb-header-65500.jpg", "image/jpeg");
    let r = p.unwrap_err();
    assert!(
        matches!(r.code, RejectCode::TooManyPixels | RejectCode::DecodeFailed),
        "{r}"
    );
}

#[test]
fn variant_formats_and_limits_are_configurable() {
    let opts = Options {
        variants: latchkey_media::default_variants(latchkey_media::VariantFormat::Webp),
        max_pixels: 640 * 480 - 1,
        ..Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let r = process(&read("small-gps.jpg"), "image/jpeg", &opts, dir.path()).unwrap_err();
    assert_eq!(r.code, RejectCode::TooManyPixels);
    let opts = Options {
        max_pixels: 640 * 480,
        ..opts
    };
    let p = process(&read("small-gps.jpg"), "image/jpeg", &opts, dir.path()).unwrap();
    assert!(p.variants.iter().all(|v| v.content_type == "image/webp"));
    assert_eq!(
        image::ImageFormat::from_path(&p.variants[0].path).unwrap(),
        image::ImageFormat::WebP
    );
    assert_eq!(dims(&p.variants[0].path), (256, 192));
}

// ---------------------------------------------------------------- isolation

fn isolation(memory_mib: u64) -> Isolation {
    Isolation {
        command: vec![env!("CARGO_BIN_EXE_latchkey-media-worker").into()],
        memory_bytes: memory_mib << 20,
        cpu_seconds: 30,
        wall: Duration::from_secs(60),
    }
}

fn job(name: &str, declared: &str, options: Options, dir: &Path) -> Job {
    Job {
        input: testdata(name),
        declared_type: declared.into(),
        out_dir: dir.to_owned(),
        options,
    }
}

#[test]
fn pixel_flood_is_refused_with_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_isolated(
        &isolation(1024),
        &job(
            "bomb-900mp.png",
            "image/png",
            Options::default(),
            dir.path(),
        ),
    )
    .unwrap();
    match report.reply {
        WorkerReply::Rejected(r) => assert_eq!(r.code, RejectCode::TooManyPixels),
        other => panic!("{other:?}"),
    }
    assert!(report.max_rss_kib > 0);
    assert!(
        report.max_rss_kib < 200 * 1024,
        "peak RSS {} KiB",
        report.max_rss_kib
    );
}

#[test]
fn a_decoder_out_of_memory_fails_only_its_file() {
    // With the header check opened wide, the 900 MP bomb would need
    // 2.7 GB: the address-space limit stops the decoder, and the parent
    // gets a rejection, not a crash.
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_pixels: u64::MAX,
        max_side: u32::MAX,
        ..Options::default()
    };
    let report = run_isolated(
        &isolation(256),
        &job("bomb-900mp.png", "image/png", opts, dir.path()),
    )
    .unwrap();
    match report.reply {
        WorkerReply::Rejected(r) => assert_eq!(r.code, RejectCode::DecodeFailed, "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(
        report.max_rss_kib < 300 * 1024,
        "peak RSS {} KiB",
        report.max_rss_kib
    );
    // The same worker, next file, is fine.
    let dir = tempfile::tempdir().unwrap();
    let report = run_isolated(
        &isolation(1024),
        &job(
            "small-gps.jpg",
            "image/jpeg",
            Options::default(),
            dir.path(),
        ),
    )
    .unwrap();
    assert!(
        matches!(report.reply, WorkerReply::Processed(_)),
        "{:?}",
        report.reply
    );
}

#[test]
fn crashes_and_hangs_become_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(
        "small-gps.jpg",
        "image/jpeg",
        Options::default(),
        dir.path(),
    );
    let crash = Isolation {
        command: vec!["/bin/sh".into(), "-c".into(), "kill -SEGV $$".into()],
        ..isolation(1024)
    };
    let r = run_isolated(&crash, &j).unwrap();
    assert!(
        matches!(&r.reply, WorkerReply::Rejected(r) if r.code == RejectCode::DecodeFailed && r.detail.contains("crashed")),
        "{:?}",
        r.reply
    );
    let hang = Isolation {
        command: vec!["/bin/sh".into(), "-c".into(), "sleep 30; sleep 30".into()],
        wall: Duration::from_millis(300),
        ..isolation(1024)
    };
    let r = run_isolated(&hang, &j).unwrap();
    assert!(
        matches!(&r.reply, WorkerReply::Rejected(r) if r.detail.contains("longer than")),
        "{:?}",
        r.reply
    );
    let garbage = Isolation {
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "cat >/dev/null; echo '{\"processed\": 1}'".into(),
        ],
        ..isolation(1024)
    };
    let r = run_isolated(&garbage, &j).unwrap();
    assert!(
        matches!(&r.reply, WorkerReply::Rejected(r) if r.code == RejectCode::DecodeFailed),
        "{:?}",
        r.reply
    );
}

#[test]
fn the_worker_processes_heic_under_limits() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_isolated(
        &isolation(1024),
        &job("photo.heic", "image/heic", Options::default(), dir.path()),
    )
    .unwrap();
    match report.reply {
        WorkerReply::Processed(p) => assert_all_clean(&p),
        other => panic!("{other:?} {}", report.stderr),
    }
}
