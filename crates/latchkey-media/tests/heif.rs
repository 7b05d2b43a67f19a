//! HEIC originals kept (`HeifOriginal::Keep`): the container editor on the
//! real iPhone-style test file, on copies given XMP (by `exiftool`), a
//! rotation (`irot`, added here box by box) and an appended payload, then
//! decoded by libheif (`heif-convert`) and read by two metadata readers
//! (`kamadak-exif` and `exiftool`). Mutated files never make it panic.

use std::path::Path;
use std::process::Command;

use latchkey_media::heif::{BoxAt, Iloc, box_at, children, strip_heif, top_level};
use latchkey_media::{HeifOriginal, Options, RejectCode, process};
use proptest::prelude::*;

fn photo() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/photo.heic");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn keep() -> Options {
    Options {
        heif_original: HeifOriginal::Keep,
        ..Options::default()
    }
}

/// `bytes` with XMP (GPS and a title) added by exiftool, as a `mime` item.
fn with_xmp(bytes: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.heic"), dir.path().join("out.heic"));
    std::fs::write(&src, bytes).unwrap();
    let out = Command::new("exiftool")
        .args([
            "-q",
            "-XMP-dc:Title=secret title",
            "-XMP:GPSLatitude=48.8584",
            "-XMP:GPSLongitude=2.2945",
            "-o",
        ])
        .arg(&dst)
        .arg(&src)
        .output()
        .expect("exiftool (Debian libimage-exiftool-perl; scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xmp = std::fs::read(&dst).unwrap();
    assert!(find(&xmp, b"application/rdf+xml") && find(&xmp, b"secret title"));
    xmp
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn boxes_in(b: &[u8], parent: &BoxAt, skip: usize) -> Vec<BoxAt> {
    children(b, parent.body + skip, parent.end).unwrap()
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// `bytes` with an `irot` property (`quarters` × 90° anticlockwise) on
/// item 1, as a camera writes a portrait photo: added to `ipco`, associated
/// in `ipma`, and every file offset in `iloc` moved by what `meta` grew.
fn with_irot(b: &[u8], quarters: u8) -> Vec<u8> {
    let (top, _) = top_level(b);
    let meta = *top.iter().find(|t| &t.kind == b"meta").unwrap();
    let parts = boxes_in(b, &meta, 4);
    let mut grown_parts = Vec::new();
    for p in &parts {
        let whole = b[p.start..p.end].to_vec();
        if &p.kind != b"iprp" {
            grown_parts.push((p.kind, whole));
            continue;
        }
        let mut iprp = Vec::new();
        let mut index = 0;
        for c in boxes_in(b, p, 0) {
            match &c.kind {
                b"ipco" => {
                    index = boxes_in(b, &c, 0).len() + 1;
                    let mut body = b[c.body..c.end].to_vec();
                    body.extend_from_slice(&boxed(b"irot", &[quarters & 3]));
                    iprp.extend_from_slice(&boxed(b"ipco", &body));
                }
                b"ipma" => {
                    // version 0, flags 0: 16-bit item IDs, 7-bit indices.
                    assert_eq!(&b[c.body..c.body + 4], &[0, 0, 0, 0]);
                    let count = u32::from_be_bytes(b[c.body + 4..c.body + 8].try_into().unwrap());
                    let mut body = b[c.body..c.body + 8].to_vec();
                    let mut at = c.body + 8;
                    for _ in 0..count {
                        let id = u16::from_be_bytes([b[at], b[at + 1]]);
                        let n = b[at + 2] as usize;
                        let assoc = &b[at + 3..at + 3 + n];
                        body.extend_from_slice(&b[at..at + 2]);
                        if id == 1 {
                            body.push(n as u8 + 1);
                            body.extend_from_slice(assoc);
                            body.push(0x80 | index as u8);
                        } else {
                            body.push(n as u8);
                            body.extend_from_slice(assoc);
                        }
                        at += 3 + n;
                    }
                    iprp.extend_from_slice(&boxed(b"ipma", &body));
                }
                _ => iprp.extend_from_slice(&b[c.start..c.end]),
            }
        }
        grown_parts.push((p.kind, boxed(b"iprp", &iprp)));
    }
    let old_len = meta.end - meta.start;
    let new_len = 12 + grown_parts.iter().map(|(_, v)| v.len()).sum::<usize>();
    let delta = (new_len - old_len) as u64;
    let mut meta_out = (new_len as u32).to_be_bytes().to_vec();
    meta_out.extend_from_slice(b"meta");
    meta_out.extend_from_slice(&b[meta.body..meta.body + 4]);
    for (kind, mut bytes) in grown_parts {
        if &kind == b"iloc" {
            let bx = box_at(&bytes, 0, bytes.len()).unwrap();
            let mut iloc = Iloc::parse(&bytes, &bx).unwrap();
            for item in &mut iloc.items {
                if item.construction_method() == 0 {
                    if item.base_offset >= meta.end as u64 {
                        item.base_offset += delta;
                    } else {
                        for e in &mut item.extents {
                            e.offset += delta;
                        }
                    }
                }
            }
            bytes = iloc.encode().unwrap();
        }
        meta_out.extend_from_slice(&bytes);
    }
    let mut out = b[..meta.start].to_vec();
    out.extend_from_slice(&meta_out);
    out.extend_from_slice(&b[meta.end..]);
    out
}

/// Decodes with libheif; the PNG's width, height and RGB(A) bytes.
fn heif_decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("x.heic"), dir.path().join("x.png"));
    std::fs::write(&src, bytes).unwrap();
    let out = Command::new("heif-convert")
        .arg("--quiet")
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("heif-convert (Debian libheif-examples)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&dst).unwrap();
    (img.width(), img.height(), img.into_bytes())
}

/// What exiftool reads: `Group:Tag` keys.
fn exiftool_tags(bytes: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.heic");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("exiftool")
        .args(["-j", "-a", "-G1"])
        .arg(&path)
        .output()
        .expect("exiftool");
    assert!(out.status.success());
    let v: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap();
    v[0].keys().cloned().collect()
}

/// Nothing of EXIF, GPS or XMP by either reader, nor in the raw bytes.
fn assert_no_metadata(what: &str, bytes: &[u8]) {
    let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(bytes));
    assert!(
        matches!(exif, Err(exif::Error::NotFound(_))),
        "{what}: kamadak-exif still reads {:?}",
        exif.map(|e| e.fields().count())
    );
    for key in exiftool_tags(bytes) {
        let group = key.split(':').next().unwrap_or("");
        assert!(
            !matches!(group, "GPS" | "IFD0" | "IFD1" | "ExifIFD")
                && !group.starts_with("XMP")
                && !key.contains("GPS")
                && !key.contains("Thumbnail"),
            "{what}: exiftool still reads {key}"
        );
    }
    for needle in [
        &b"Exif"[..],
        b"MM\0*",
        b"iPhone",
        b"rdf:RDF",
        b"secret title",
        b"application/rdf+xml",
        b"PK\x03\x04",
        b"<?php",
    ] {
        assert!(
            !find(bytes, needle),
            "{what}: {:?} is still in the bytes",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn the_test_photo_loses_exif_and_keeps_every_pixel() {
    let src = photo();
    assert!(
        find(&src, b"iPhone") && find(&src, b"Exif"),
        "the fixture has EXIF"
    );
    let clean = strip_heif(&src).unwrap();
    assert!(clean.len() <= src.len());
    assert_no_metadata("photo.heic", &clean);
    let (w, h, pixels) = heif_decode(&clean);
    assert_eq!((w, h), (640, 480));
    assert_eq!(pixels, heif_decode(&src).2, "the coded image is untouched");
    assert_eq!(
        strip_heif(&clean).unwrap(),
        clean,
        "stripping again changes nothing"
    );
}

#[test]
fn xmp_and_appended_payloads_go_too() {
    let mut src = with_xmp(&photo());
    src.extend_from_slice(b"PK\x03\x04<?php system($_GET['c']); ?>");
    let clean = strip_heif(&src).unwrap();
    assert_no_metadata("photo.heic with XMP", &clean);
    assert_eq!(heif_decode(&clean).2, heif_decode(&photo()).2);
}

#[test]
fn rotation_is_kept_and_decides_the_size() {
    let src = with_irot(&with_xmp(&photo()), 1);
    let (w, h, _) = heif_decode(&src);
    assert_eq!((w, h), (480, 640), "the fixture really is rotated");
    let clean = strip_heif(&src).unwrap();
    assert_no_metadata("rotated photo.heic", &clean);
    assert_eq!(heif_decode(&clean), heif_decode(&src));

    // Through the pipeline: served as HEIC, its size the upright one.
    let dir = tempfile::tempdir().unwrap();
    let p = process(&src, "image/heic", &keep(), dir.path()).unwrap();
    assert_eq!(p.original.content_type, "image/heic");
    assert!(p.lossless);
    assert_eq!((p.original.width, p.original.height), (480, 640));
    let served = std::fs::read(&p.original.path).unwrap();
    assert_eq!(served, clean);
    let v: Vec<_> = p
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.content_type.as_str(), v.width, v.height))
        .collect();
    assert_eq!(
        v,
        [
            ("thumb", "image/jpeg", 192, 256),
            ("medium", "image/jpeg", 480, 640)
        ]
    );
    for v in &p.variants {
        let img = image::open(&v.path).unwrap();
        assert_eq!((img.width(), img.height()), (v.width, v.height));
    }
}

/// A HEIC as libheif's own encoder writes it: item data in `idat` (a
/// grid), a thumbnail item (`thmb`), `iloc` version 1, and EXIF.
fn encoded_by_libheif() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("enc.heic");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/small-gps-orient8.jpg");
    let out = Command::new("heif-enc")
        .args(["-q", "50", "-t", "64", "-o"])
        .arg(&dst)
        .arg(&src)
        .output()
        .expect("heif-enc (Debian libheif-examples)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&dst).unwrap();
    assert!(find(&bytes, b"idat") && find(&bytes, b"thmb") && find(&bytes, b"Exif"));
    bytes
}

#[test]
fn grids_thumbnails_and_idat_survive() {
    let src = encoded_by_libheif();
    let clean = strip_heif(&src).unwrap();
    assert_no_metadata("heif-enc output", &clean);
    assert!(
        find(&clean, b"thmb"),
        "the thumbnail item is an image: it stays"
    );
    // libheif goes by irot, which this file has none of, not by the EXIF
    // orientation (8) its encoder copied from the JPEG: the same pixels,
    // as stored, before and after.
    let (w, h, pixels) = heif_decode(&clean);
    assert_eq!((w, h), (480, 640));
    assert_eq!(pixels, heif_decode(&src).2);
    assert_eq!(strip_heif(&clean).unwrap(), clean);
}

#[test]
fn the_default_still_serves_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let p = process(&photo(), "image/heic", &Options::default(), dir.path()).unwrap();
    assert_eq!(p.original.content_type, "image/jpeg");
    assert!(!p.lossless);
}

#[test]
fn broken_containers_are_rejected_with_a_reason() {
    let src = photo();
    let (top, _) = top_level(&src);
    let meta = *top.iter().find(|t| &t.kind == b"meta").unwrap();
    let mdat = *top.iter().find(|t| &t.kind == b"mdat").unwrap();
    // Cut inside mdat: the image's data is no longer in the file.
    let cut = &src[..mdat.body + 100];
    let err = strip_heif(cut).unwrap_err();
    assert!(err.contains("outside mdat"), "{err}");
    // Two meta boxes: readers could disagree on which counts.
    let mut two = src[..meta.end].to_vec();
    two.extend_from_slice(&src[meta.start..]);
    assert!(strip_heif(&two).unwrap_err().contains("more than one meta"));
    // Through the pipeline, a rejection, not a crash.
    let dir = tempfile::tempdir().unwrap();
    let r = process(cut, "image/heic", &keep(), dir.path()).unwrap_err();
    assert_eq!(r.code, RejectCode::DecodeFailed, "{r}");
}

/// Seeds for mutation: the real file, with XMP, rotated.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let base = photo();
        let xmp = with_xmp(&base);
        let rot = with_irot(&xmp, 3);
        vec![base, xmp, rot, encoded_by_libheif()]
    })
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        proptest::collection::vec(
            (0usize..700, any::<prop::sample::Index>(), any::<u8>()),
            1..6,
        ),
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(which, edits, cut)| {
            let seeds = seeds();
            let mut b = seeds[which.index(seeds.len())].clone();
            for (near, anywhere, v) in edits {
                // Most edits hit ftyp and meta (sizes, counts, offsets).
                let i = if near % 4 != 0 {
                    near.min(b.len() - 1)
                } else {
                    anywhere.index(b.len())
                };
                b[i] = v;
            }
            if let Some(c) = cut {
                b.truncate(c.index(b.len() + 1));
            }
            b
        })
}

/// `cases` cases, or `PROPTEST_CASES` when set; failing inputs are kept
/// in (and replayed first from) the file named here.
fn config(cases: u32) -> ProptestConfig {
    latchkey_testkit::proptest_config(cases, "tests/proptest-regressions/heif.txt")
}

proptest! {
    #![proptest_config(config(3000))]

    /// Never a panic; when it answers, the answer is no larger than the
    /// input and already stripped (a second pass changes nothing).
    #[test]
    fn the_editor_never_panics_on_mutated_files(bytes in mutated()) {
        if let Ok(clean) = strip_heif(&bytes) {
            prop_assert!(clean.len() <= bytes.len());
            let again = strip_heif(&clean);
            prop_assert_eq!(again.as_ref(), Ok(&clean));
        }
    }

    #[test]
    fn the_editor_never_panics_on_random_boxes(
        rest in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut b = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
        b.extend_from_slice(&rest);
        if let Ok(clean) = strip_heif(&b) {
            prop_assert!(clean.len() <= b.len());
        }
    }
}
