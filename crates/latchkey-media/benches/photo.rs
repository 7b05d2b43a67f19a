//! The 12 MP iPhone test photo (`../shared/testdata/iphone-12mp-gps-orient6.jpg`,
//! 4032×3024, EXIF orientation 6, GPS) through the pipeline: end to end
//! (`process`, the path the worker runs, minus the process isolation) and
//! step by step, then `vipsthumbnail` / `vips autorot` (Debian
//! `libvips-tools`) making the same outputs, when they are on `PATH`.
//!
//! `cargo bench -p latchkey-media --bench photo` (`PHOTO_BENCH_ITERS`,
//! default 10). Prints a Markdown table of the median and the fastest run
//! per row. Without `--bench` (as `cargo test --all-targets` runs it) it
//! makes one pass only, as a smoke check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::DynamicImage;
use latchkey_media::{Options, container, process, sniff, steps};

const PHOTO: &str = "iphone-12mp-gps-orient6.jpg";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
}

struct Row {
    what: String,
    median: Duration,
    min: Duration,
}

fn time<T>(iters: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut runs = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        std::hint::black_box(f());
        runs.push(start.elapsed());
    }
    runs.sort();
    (runs[runs.len() / 2], runs[0])
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let iters = if bench {
        std::env::var("PHOTO_BENCH_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10usize)
            .max(1)
    } else {
        1
    };
    let path = testdata().join(PHOTO);
    let input = std::fs::read(&path).expect("the test photo");
    let opts = Options::default();
    let out = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut add = |what: &str, (median, min): (Duration, Duration)| {
        rows.push(Row {
            what: what.into(),
            median,
            min,
        })
    };

    // End to end, exactly what the worker process does.
    let done = process(&input, "image/jpeg", &opts, out.path()).unwrap();
    assert_eq!((done.original.width, done.original.height), (3024, 4032));
    add(
        "**latchkey end to end** (`process`: original + thumb 256 + medium 1280 + thumbhash)",
        time(iters, || {
            process(&input, "image/jpeg", &opts, out.path()).unwrap()
        }),
    );

    // Step by step, the same calls `process` makes on this file.
    add("sniff", time(iters, || sniff(&input)));
    let header = container::jpeg_header(&input).unwrap();
    add(
        "header (limits, before decoding)",
        time(iters, || container::jpeg_header(&input).unwrap()),
    );
    add(
        "decode (12 MP JPEG)",
        time(iters, || {
            steps::decode(&input, image::ImageFormat::Jpeg, &header).unwrap()
        }),
    );
    let (decoded, orientation, icc) =
        steps::decode(&input, image::ImageFormat::Jpeg, &header).unwrap();
    add(
        "orient (rotate 90°)",
        time(iters, || {
            let mut img = decoded.clone();
            img.apply_orientation(orientation);
            img
        }),
    );
    add(
        "  (clone of the decoded image, included in the row above)",
        time(iters, || decoded.clone()),
    );
    let mut upright = decoded.clone();
    upright.apply_orientation(orientation);
    add(
        "strip = re-encode the upright original (JPEG q85, ICC kept)",
        time(iters, || {
            steps::encode_jpeg(&upright, 85, icc.clone()).unwrap()
        }),
    );
    add(
        "  (lossless strip, as for orientation 1: segments only)",
        time(iters, || container::strip_jpeg(&input).unwrap()),
    );
    add("flatten to RGB8", time(iters, || steps::flatten(&upright)));
    let rgb = steps::flatten(&upright);
    add(
        "resize thumb (256, Lanczos3)",
        time(iters, || steps::resize_to(&rgb, 256).unwrap()),
    );
    add(
        "resize medium (1280, Lanczos3)",
        time(iters, || steps::resize_to(&rgb, 1280).unwrap()),
    );
    let thumb = DynamicImage::ImageRgb8(steps::resize_to(&rgb, 256).unwrap());
    let medium = DynamicImage::ImageRgb8(steps::resize_to(&rgb, 1280).unwrap());
    add(
        "encode thumb (JPEG q85)",
        time(iters, || steps::encode_jpeg(&thumb, 85, None).unwrap()),
    );
    add(
        "encode medium (JPEG q85)",
        time(iters, || steps::encode_jpeg(&medium, 85, None).unwrap()),
    );
    add(
        "thumbhash (resize to 100 + hash)",
        time(iters, || steps::thumbhash_of(&upright).unwrap()),
    );
    // libvips, the same outputs: two thumbnails (autorotated, stripped,
    // JPEG q85) and an upright, stripped full-size copy.
    let has_vips = Command::new("vipsthumbnail")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_vips {
        let p = path.to_str().unwrap();
        let dir = out.path().to_str().unwrap();
        let thumb_out = format!("{dir}/vt_%s.jpg[Q=85,strip]");
        let medium_out = format!("{dir}/vm_%s.jpg[Q=85,strip]");
        let orig_out = format!("{dir}/vo.jpg[Q=85,strip]");
        let t = time(iters, || {
            run("vipsthumbnail", &[p, "--size", "256", "-o", &thumb_out])
        });
        let m = time(iters, || {
            run("vipsthumbnail", &[p, "--size", "1280", "-o", &medium_out])
        });
        let o = time(iters, || run("vips", &["autorot", p, &orig_out]));
        let all = time(iters, || {
            run("vipsthumbnail", &[p, "--size", "256", "-o", &thumb_out]);
            run("vipsthumbnail", &[p, "--size", "1280", "-o", &medium_out]);
            run("vips", &["autorot", p, &orig_out]);
        });
        add(
            "**vips: all three** (the three commands below, one after another)",
            all,
        );
        add("vipsthumbnail --size 256 (thumb)", t);
        add("vipsthumbnail --size 1280 (medium)", m);
        add("vips autorot (upright stripped original)", o);
        let variants_only = time(iters, || {
            run("vipsthumbnail", &[p, "--size", "256", "-o", &thumb_out]);
            run("vipsthumbnail", &[p, "--size", "1280", "-o", &medium_out]);
        });
        add("vips: both thumbnails only", variants_only);
    } else {
        eprintln!("vipsthumbnail not on PATH (apt-get install libvips-tools): no vips rows");
    }

    println!(
        "photo: {PHOTO} ({} bytes), {iters} runs per row",
        input.len()
    );
    println!();
    println!("| step | median ms | min ms |");
    println!("|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.what, ms(r.median), ms(r.min));
    }
}
