//! Property tests of the header sniffer and container walkers (proptest;
//! the coverage-guided side is `fuzz/`'s `image_headers` target): random
//! bytes and mutated real files from `../shared/testdata/` are answered Ok
//! or Err, never a panic, and nothing the walkers return is larger than
//! what they were given (no allocation sized by a hostile header).

use std::path::PathBuf;
use std::sync::OnceLock;

use latchkey_media::container::{
    heif_header, jpeg_header, jpeg_pieces, png_header, strip_jpeg, walk_gif, webp_header,
};
use latchkey_media::sniff;
use proptest::prelude::*;

/// The first 32 KiB of each real image: headers and the start of the data.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                let ext = p.extension()?.to_str()?;
                matches!(ext, "jpg" | "png" | "gif" | "webp" | "heic").then_some(p)
            })
            .map(|p| {
                let mut b = std::fs::read(&p).unwrap();
                b.truncate(32 * 1024);
                b
            })
            .collect();
        out.sort();
        assert!(out.len() >= 8, "testdata images in {}", dir.display());
        out
    })
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = sniff(bytes);
    let _ = jpeg_header(bytes);
    let _ = png_header(bytes);
    let _ = webp_header(bytes);
    let _ = heif_header(bytes);
    if let Ok(pieces) = jpeg_pieces(bytes) {
        let total: usize = pieces.iter().map(|p| p.bytes.len()).sum();
        prop_assert!(total <= bytes.len());
    }
    if let Ok(clean) = strip_jpeg(bytes) {
        prop_assert!(clean.len() <= bytes.len());
    }
    if let Ok(walk) = walk_gif(bytes) {
        prop_assert!(walk.clean.len() <= bytes.len() + 16);
    }
    Ok(())
}

/// A real file with a few bytes overwritten (often a length or a
/// dimension field near the start), then perhaps cut short.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        proptest::collection::vec(
            (0usize..512, any::<prop::sample::Index>(), any::<u8>()),
            1..8,
        ),
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(which, edits, cut)| {
            let seeds = seeds();
            let mut b = seeds[which.index(seeds.len())].clone();
            for (near, anywhere, v) in edits {
                // Half the edits hit the header, half anywhere.
                let i = if near % 2 == 0 {
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
    latchkey_testkit::proptest_config(cases, "tests/proptest-regressions/props.txt")
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes)?;
    }

    #[test]
    fn random_bytes_behind_a_real_signature_never_panic(
        magic in prop_oneof![
            Just(&b"\xFF\xD8\xFF"[..]),
            Just(&b"\x89PNG\r\n\x1a\n"[..]),
            Just(&b"GIF89a"[..]),
            Just(&b"RIFF\0\0\0\0WEBPVP8 "[..]),
            Just(&b"\0\0\0\x18ftypheic"[..]),
        ],
        rest in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut b = magic.to_vec();
        b.extend_from_slice(&rest);
        check(&b)?;
    }

    #[test]
    fn mutated_real_images_never_panic(bytes in mutated()) {
        check(&bytes)?;
    }
}
