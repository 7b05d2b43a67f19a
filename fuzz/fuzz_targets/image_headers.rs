//! The header sniffer, the container walkers and the HEIF metadata
//! stripper read an uploaded file before anything decodes it: any bytes
//! are answered Ok or Err, never a panic; nothing they return is larger
//! than what they were given (no allocation sized by a hostile header);
//! and a stripped HEIF is already stripped (a second pass changes nothing). Seeds: the heads of the real
//! photos in `../shared/testdata/` (see README.md here).
#![no_main]

use latchkey_media::container::{
    heif_header, jpeg_header, jpeg_pieces, png_header, strip_jpeg, walk_gif, webp_header,
};
use latchkey_media::heif::strip_heif;
use latchkey_media::sniff;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The pipeline sniffs first and reads the header of that type only;
    // here every reader sees every input, since none may panic on any.
    let _ = sniff(bytes);
    let _ = jpeg_header(bytes);
    let _ = png_header(bytes);
    let _ = webp_header(bytes);
    let _ = heif_header(bytes);
    if let Ok(pieces) = jpeg_pieces(bytes) {
        let total: usize = pieces.iter().map(|p| p.bytes.len()).sum();
        assert!(total <= bytes.len());
    }
    if let Ok(clean) = strip_jpeg(bytes) {
        assert!(clean.len() <= bytes.len());
    }
    if let Ok(walk) = walk_gif(bytes) {
        assert!(walk.clean.len() <= bytes.len() + 16);
    }
    if let Ok(clean) = strip_heif(bytes) {
        assert!(clean.len() <= bytes.len());
        assert_eq!(
            strip_heif(&clean).as_ref(),
            Ok(&clean),
            "stripping is idempotent"
        );
    }
});
