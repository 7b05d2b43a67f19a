//! The real type of a file, from its first bytes, and whether it agrees
//! with the type the client declared. Nothing but these magic numbers makes
//! a file an image: SVG, HTML, scripts and archives never are.

use serde::{Deserialize, Serialize};

/// An image container the pipeline knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
    Heic,
    Heif,
    Avif,
}

impl ImageType {
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
            ImageType::Gif => "image/gif",
            ImageType::Heic => "image/heic",
            ImageType::Heif => "image/heif",
            ImageType::Avif => "image/avif",
        }
    }

    /// Decoded by libheif (HEIC/HEIF/AVIF all live in ISO-BMFF boxes).
    pub fn is_heif_family(self) -> bool {
        matches!(self, ImageType::Heic | ImageType::Heif | ImageType::Avif)
    }

    /// Whether a declared content type (parameters ignored, any case)
    /// names this type. HEIC and HEIF are one family whose brands clients
    /// name loosely, so either declaration fits either sniffed type.
    pub fn matches_declared(self, declared: &str) -> bool {
        let essence = declared
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match self {
            ImageType::Jpeg => {
                matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/pjpeg")
            }
            ImageType::Heic | ImageType::Heif => {
                matches!(
                    essence.as_str(),
                    "image/heic" | "image/heif" | "image/heic-sequence" | "image/heif-sequence"
                )
            }
            other => essence == other.mime(),
        }
    }
}

/// The image type the bytes really are, or `None` when they are not an
/// image the pipeline accepts.
pub fn sniff(bytes: &[u8]) -> Option<ImageType> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(ImageType::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(ImageType::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some(ImageType::Gif);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(ImageType::Webp);
    }
    ftyp(bytes)
}

/// ISO-BMFF: a leading `ftyp` box whose major or compatible brands name a
/// still-image brand.
fn ftyp(bytes: &[u8]) -> Option<ImageType> {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes(bytes[..4].try_into().ok()?) as usize;
    if !(16..=4096).contains(&size) || size > bytes.len() {
        return None;
    }
    let mut brands = vec![&bytes[8..12]];
    brands.extend(bytes[16..size].chunks_exact(4));
    let has = |names: &[&[u8]]| brands.iter().any(|b| names.contains(b));
    if has(&[b"avif", b"avis"]) {
        Some(ImageType::Avif)
    } else if has(&[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"]) {
        Some(ImageType::Heic)
    } else if has(&[b"mif1", b"msf1"]) {
        Some(ImageType::Heif)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(ImageType::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageType::Png));
        assert_eq!(sniff(b"GIF89a......"), Some(ImageType::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageType::Webp));
        let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
        heic.extend([0; 8]);
        assert_eq!(sniff(&heic), Some(ImageType::Heic));
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf....";
        assert_eq!(sniff(avif), Some(ImageType::Avif));
    }

    #[test]
    fn never_images() {
        for bytes in [
            &b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"[..],
            b"<!DOCTYPE html><script>alert(1)</script>",
            b"#!/bin/sh\nrm -rf /",
            b"PK\x03\x04zipzipzip",
            b"<?php system($_GET['c']); ?>",
            b"\0\0\0\x18ftypisom\0\0\0\0isommp41",
            b"",
            b"\xFF\xD8",
        ] {
            assert_eq!(sniff(bytes), None, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn declared_types() {
        assert!(ImageType::Jpeg.matches_declared("image/jpeg"));
        assert!(ImageType::Jpeg.matches_declared("IMAGE/JPEG; charset=x"));
        assert!(!ImageType::Png.matches_declared("image/jpeg"));
        assert!(ImageType::Heif.matches_declared("image/heic"));
        assert!(ImageType::Heic.matches_declared("image/heif"));
        assert!(!ImageType::Avif.matches_declared("image/heic"));
    }
}
