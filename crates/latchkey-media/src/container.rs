//! Hand-walked container structure: enough of JPEG, PNG, GIF, WebP and
//! ISO-BMFF to read dimensions and frame counts from headers (before any
//! pixel buffer exists), and to re-write JPEG and GIF files without their
//! metadata and without anything appended after their end marker.

/// What a header says about the image, before any decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

// ---------------------------------------------------------------- JPEG

/// One piece of a JPEG file: a marker segment (marker, whole bytes
/// including `FF xx` and length) or entropy-coded data after a scan.
#[derive(Debug)]
pub struct JpegPiece<'a> {
    pub marker: Option<u8>,
    pub bytes: &'a [u8],
}

/// Walks a JPEG from SOI to EOI. Errors when the structure is broken or the
/// file ends before EOI (a truncated file is not served). Bytes after EOI
/// (an appended archive or script) are not part of the result.
pub fn jpeg_pieces(b: &[u8]) -> Result<Vec<JpegPiece<'_>>, String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("no JPEG start marker".into());
    }
    let mut pieces = Vec::new();
    let mut pos = 2;
    loop {
        if b.get(pos) != Some(&0xFF) {
            return Err(format!("expected a marker at byte {pos}"));
        }
        let start = pos;
        while b.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *b.get(pos).ok_or("the file ends inside a marker")?;
        pos += 1;
        match marker {
            0xD9 => return Ok(pieces),
            0xD0..=0xD7 | 0x01 => {
                pieces.push(JpegPiece {
                    marker: Some(marker),
                    bytes: &b[start..pos],
                });
                continue;
            }
            0xD8 | 0x00 => return Err(format!("unexpected marker {marker:#04x}")),
            _ => {}
        }
        let len = be16(b, pos).ok_or("the file ends inside a segment length")? as usize;
        if len < 2 || pos + len > b.len() {
            return Err(format!(
                "segment {marker:#04x} runs past the end of the file"
            ));
        }
        pos += len;
        pieces.push(JpegPiece {
            marker: Some(marker),
            bytes: &b[start..pos],
        });
        if marker == 0xDA {
            // Entropy-coded data runs to the next marker that is neither a
            // stuffed zero nor a restart marker.
            let data = pos;
            loop {
                match b.get(pos) {
                    None => return Err("the file ends inside scan data".into()),
                    Some(0xFF) => match b.get(pos + 1) {
                        Some(0x00 | 0xD0..=0xD7) => pos += 2,
                        Some(0xFF) => pos += 1,
                        Some(_) => break,
                        None => return Err("the file ends inside scan data".into()),
                    },
                    Some(_) => pos += 1,
                }
            }
            pieces.push(JpegPiece {
                marker: None,
                bytes: &b[data..pos],
            });
        }
    }
}

/// Width, height of the first frame header (SOFn).
pub fn jpeg_header(b: &[u8]) -> Result<Header, String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("no JPEG start marker".into());
    }
    let mut pos = 2;
    loop {
        while b.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *b.get(pos).ok_or("no frame header")?;
        pos += 1;
        if matches!(marker, 0xD0..=0xD7 | 0x01) {
            continue;
        }
        let len = be16(b, pos).ok_or("no frame header")? as usize;
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let height = be16(b, pos + 3).ok_or("short frame header")?;
            let width = be16(b, pos + 5).ok_or("short frame header")?;
            return Ok(Header {
                width,
                height,
                frames: 1,
            });
        }
        if marker == 0xDA || marker == 0xD9 {
            return Err("no frame header before the scan".into());
        }
        pos += len;
        if b.get(pos) != Some(&0xFF) {
            return Err("broken segment structure".into());
        }
    }
}

/// The JPEG without metadata, bit-for-bit otherwise: keeps JFIF (minus any
/// thumbnail), the ICC profile, Adobe's colour-transform flag and every
/// coding segment; drops EXIF and XMP (APP1), IPTC (APP13), every other
/// APPn and comments, and anything after EOI.
pub fn strip_jpeg(b: &[u8]) -> Result<Vec<u8>, String> {
    let pieces = jpeg_pieces(b)?;
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    for p in &pieces {
        let payload = p.bytes.get(4..).unwrap_or_default();
        match p.marker {
            Some(0xE0) if payload.starts_with(b"JFIF\0") && payload.len() >= 14 => {
                // Version, units, densities; thumbnail size forced to 0.
                out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
                out.extend_from_slice(&payload[..12]);
                out.extend_from_slice(&[0, 0]);
            }
            Some(0xE2) if payload.starts_with(b"ICC_PROFILE\0") => out.extend_from_slice(p.bytes),
            Some(0xEE) if payload.starts_with(b"Adobe") => out.extend_from_slice(p.bytes),
            Some(0xE0..=0xEF | 0xFE) => {}
            _ => out.extend_from_slice(p.bytes),
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

// ---------------------------------------------------------------- PNG

pub fn png_header(b: &[u8]) -> Result<Header, String> {
    if b.get(12..16) != Some(b"IHDR") {
        return Err("no IHDR chunk".into());
    }
    let width = be32(b, 16).ok_or("short IHDR")?;
    let height = be32(b, 20).ok_or("short IHDR")?;
    // An APNG says how many frames it has in acTL, before the first IDAT.
    let mut frames = 1;
    let mut pos = 8;
    while let (Some(len), Some(kind)) = (be32(b, pos), b.get(pos + 4..pos + 8)) {
        if kind == b"IDAT" {
            break;
        }
        if kind == b"acTL" {
            frames = be32(b, pos + 8).ok_or("short acTL")?;
        }
        pos = pos.saturating_add(12).saturating_add(len as usize);
    }
    Ok(Header {
        width,
        height,
        frames,
    })
}

// ---------------------------------------------------------------- GIF

/// A GIF walked block by block.
pub struct GifWalk {
    pub header: Header,
    /// The file re-written: header, screen descriptor, colour tables,
    /// graphic control and looping extensions and image data only; no
    /// comments, no XMP or other application extensions, nothing after the
    /// trailer.
    pub clean: Vec<u8>,
}

fn gif_sub_blocks(b: &[u8], mut pos: usize) -> Result<usize, String> {
    loop {
        let n = *b.get(pos).ok_or("the file ends inside a GIF block")? as usize;
        pos += 1 + n;
        if n == 0 {
            return Ok(pos);
        }
        if pos > b.len() {
            return Err("the file ends inside a GIF block".into());
        }
    }
}

pub fn walk_gif(b: &[u8]) -> Result<GifWalk, String> {
    let width = le16(b, 6).ok_or("short GIF header")?;
    let height = le16(b, 8).ok_or("short GIF header")?;
    let flags = *b.get(10).ok_or("short GIF header")?;
    let mut pos = 13;
    if flags & 0x80 != 0 {
        pos += 3 << ((flags & 7) + 1);
    }
    if pos > b.len() {
        return Err("short GIF colour table".into());
    }
    let mut clean = b[..pos].to_vec();
    let (mut frames, mut max_w, mut max_h) = (0u32, width, height);
    loop {
        match *b.get(pos).ok_or("the GIF has no trailer")? {
            0x3B => {
                clean.push(0x3B);
                break;
            }
            0x21 => {
                let label = *b.get(pos + 1).ok_or("short extension")?;
                let end = gif_sub_blocks(b, pos + 2)?;
                let keep = match label {
                    0xF9 => true,
                    0xFF => {
                        let app = b.get(pos + 3..pos + 14).unwrap_or_default();
                        app == b"NETSCAPE2.0" || app == b"ANIMEXTS1.0"
                    }
                    _ => false,
                };
                if keep {
                    clean.extend_from_slice(&b[pos..end]);
                }
                pos = end;
            }
            0x2C => {
                let w = le16(b, pos + 5).ok_or("short image descriptor")?;
                let h = le16(b, pos + 7).ok_or("short image descriptor")?;
                let left = le16(b, pos + 1).ok_or("short image descriptor")?;
                let top = le16(b, pos + 3).ok_or("short image descriptor")?;
                max_w = max_w.max(left + w);
                max_h = max_h.max(top + h);
                let lflags = *b.get(pos + 9).ok_or("short image descriptor")?;
                let mut p = pos + 10;
                if lflags & 0x80 != 0 {
                    p += 3 << ((lflags & 7) + 1);
                }
                // LZW minimum code size, then the data sub-blocks.
                let end = gif_sub_blocks(b, p + 1)?;
                clean.extend_from_slice(&b[pos..end]);
                frames += 1;
                pos = end;
            }
            other => return Err(format!("unknown GIF block {other:#04x}")),
        }
    }
    if frames == 0 {
        return Err("the GIF has no image".into());
    }
    Ok(GifWalk {
        header: Header {
            width: max_w,
            height: max_h,
            frames,
        },
        clean,
    })
}

// ---------------------------------------------------------------- WebP

pub fn webp_header(b: &[u8]) -> Result<Header, String> {
    let mut pos = 12;
    let mut size = None;
    let mut frames = 0u32;
    while let (Some(kind), Some(len)) = (b.get(pos..pos + 4), le32(b, pos + 4)) {
        let body = pos + 8;
        match kind {
            b"VP8X" => {
                let w = le24(b, body + 4).ok_or("short VP8X")? + 1;
                let h = le24(b, body + 7).ok_or("short VP8X")? + 1;
                size = Some((w, h));
            }
            b"VP8 " if size.is_none() => {
                let w = le16(b, body + 6).ok_or("short VP8")? & 0x3FFF;
                let h = le16(b, body + 8).ok_or("short VP8")? & 0x3FFF;
                size = Some((w, h));
            }
            b"VP8L" if size.is_none() => {
                let bits = le32(b, body + 1).ok_or("short VP8L")?;
                size = Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1));
            }
            b"ANMF" => frames += 1,
            _ => {}
        }
        pos = body
            .saturating_add(len as usize)
            .saturating_add(len as usize & 1);
    }
    let (width, height) = size.ok_or("no WebP image chunk")?;
    Ok(Header {
        width,
        height,
        frames: frames.max(1),
    })
}

// ---------------------------------------------------------------- HEIF

/// The largest image-spatial-extent (`ispe`) property in the file: the
/// primary image's size (for a grid image, the whole grid), read without
/// decoding anything.
pub fn heif_header(b: &[u8]) -> Result<Header, String> {
    let mut best: Option<(u32, u32)> = None;
    let mut from = 0;
    while let Some(i) = b[from..].windows(4).position(|w| w == b"ispe") {
        let at = from + i;
        // size(4) 'ispe' version/flags(4) width(4) height(4)
        if at >= 4
            && let (Some(w), Some(h)) = (be32(b, at + 8), be32(b, at + 12))
            && best
                .is_none_or(|(bw, bh)| u64::from(w) * u64::from(h) > u64::from(bw) * u64::from(bh))
        {
            best = Some((w, h));
        }
        from = at + 4;
    }
    let (width, height) = best.ok_or("no image size (ispe) in the HEIF file")?;
    Ok(Header {
        width,
        height,
        frames: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_walk_stops_at_eoi_and_rejects_truncation() {
        // SOI, COM "hi", SOS header (minimal), data with a stuffed FF00 and
        // RST0, EOI, then garbage.
        let mut f = vec![0xFF, 0xD8, 0xFF, 0xFE, 0, 4, b'h', b'i'];
        f.extend([0xFF, 0xDA, 0, 2]);
        f.extend([1, 2, 0xFF, 0x00, 3, 0xFF, 0xD0, 4]);
        f.extend([0xFF, 0xD9]);
        f.extend(b"<?php evil(); ?>PK\x03\x04");
        let clean = strip_jpeg(&f).unwrap();
        assert_eq!(
            clean,
            [
                0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 1, 2, 0xFF, 0, 3, 0xFF, 0xD0, 4, 0xFF, 0xD9
            ]
        );
        assert!(strip_jpeg(&f[..12]).is_err());
        assert!(jpeg_header(&f).is_err(), "no SOF");
    }

    #[test]
    fn gif_walk_is_bounded_on_garbage() {
        assert!(walk_gif(b"GIF89a").is_err());
        assert!(walk_gif(b"GIF89a\x01\0\x01\0\0\0\0\x2C").is_err());
    }
}
