//! One file through the pipeline: sniff, check limits from the header,
//! decode (with the decoder's own limits on top of the process's), orient,
//! write the clean original and variants, compute the thumbhash.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine;
use fast_image_resize as fir;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::container::{self, Header};
use crate::sniff::{ImageType, sniff};

/// The encoding of a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VariantFormat {
    Jpeg,
    /// Lossless WebP (the pure-Rust encoder has no lossy mode).
    Webp,
}

impl VariantFormat {
    pub fn extension(self) -> &'static str {
        match self {
            VariantFormat::Jpeg => "jpg",
            VariantFormat::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            VariantFormat::Jpeg => "image/jpeg",
            VariantFormat::Webp => "image/webp",
        }
    }
}

/// One derived image: at most `long_side` pixels on its longer side (never
/// enlarged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantSpec {
    /// `[a-z0-9_-]{1,32}`; part of the variant's key.
    pub name: String,
    pub long_side: u32,
    pub format: VariantFormat,
}

/// What is served as the original of a HEIC/HEIF upload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeifOriginal {
    /// Decoded and re-encoded as JPEG (what every browser shows).
    #[default]
    Jpeg,
    /// The uploaded file itself, its metadata items removed losslessly
    /// ([`crate::heif::strip_heif`]); still `image/heic` or `image/heif`.
    Keep,
}

/// What the pipeline accepts and makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Refused above this many pixels (width × height), from the header.
    pub max_pixels: u64,
    /// Refused when either side is longer.
    pub max_side: u32,
    /// Refused when an animation has more frames.
    pub max_frames: u32,
    pub variants: Vec<VariantSpec>,
    /// JPEG quality of re-encoded originals and JPEG variants.
    pub jpeg_quality: u8,
    /// The HEIF/HEIC/AVIF decoder command (Debian's `heif-convert`).
    pub heif_decoder: String,
    /// The original of a HEIC/HEIF upload (AVIF is always re-encoded).
    pub heif_original: HeifOriginal,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_side: 20_000,
            max_frames: 1_000,
            variants: default_variants(VariantFormat::Jpeg),
            jpeg_quality: 85,
            heif_decoder: "heif-convert".into(),
            heif_original: HeifOriginal::Jpeg,
        }
    }
}

/// `thumb` (256 px) and `medium` (1280 px) in `format`.
pub fn default_variants(format: VariantFormat) -> Vec<VariantSpec> {
    vec![
        VariantSpec {
            name: "thumb".into(),
            long_side: 256,
            format,
        },
        VariantSpec {
            name: "medium".into(),
            long_side: 1280,
            format,
        },
    ]
}

/// Why a file was refused. `code` is the upload's rejection reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    pub code: RejectCode,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The bytes are an image, but not of the declared type.
    TypeMismatch,
    /// The bytes are not an image the pipeline accepts at all.
    NotAnImage,
    /// Width × height or a side is over the limit.
    TooManyPixels,
    /// An animation with too many frames.
    TooManyFrames,
    /// The image is broken, truncated, or its decoder failed or ran out of
    /// memory or time.
    DecodeFailed,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::TypeMismatch => "type_mismatch",
            RejectCode::NotAnImage => "not_an_image",
            RejectCode::TooManyPixels => "too_many_pixels",
            RejectCode::TooManyFrames => "too_many_frames",
            RejectCode::DecodeFailed => "decode_failed",
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn reject(code: RejectCode, detail: impl Into<String>) -> Rejection {
    Rejection {
        code,
        detail: detail.into(),
    }
}

fn decode_failed(detail: impl std::fmt::Display) -> Rejection {
    reject(RejectCode::DecodeFailed, detail.to_string())
}

/// A file the pipeline wrote into the output folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Variant name; `original` for the clean original.
    pub name: String,
    pub path: PathBuf,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
}

/// A processed image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processed {
    /// What the bytes really were.
    pub sniffed: ImageType,
    /// The clean original (upright, no metadata).
    pub original: OutputFile,
    /// True when the original is the uploaded file with only metadata
    /// removed (pixels untouched): JPEG, GIF, and HEIC/HEIF kept as such.
    pub lossless: bool,
    pub variants: Vec<OutputFile>,
    /// ThumbHash of the upright image, base64 (standard, padded).
    pub thumbhash: String,
}

/// Runs the whole pipeline on `input`, declared by the client as
/// `declared`, writing outputs into `out_dir`.
pub fn process(
    input: &[u8],
    declared: &str,
    opts: &Options,
    out_dir: &Path,
) -> Result<Processed, Rejection> {
    let ty = sniff(input).ok_or_else(|| {
        reject(
            RejectCode::NotAnImage,
            "the bytes are not a JPEG, PNG, WebP, GIF, HEIC/HEIF or AVIF image",
        )
    })?;
    if !ty.matches_declared(declared) {
        return Err(reject(
            RejectCode::TypeMismatch,
            format!("the bytes are {}, declared as {declared}", ty.mime()),
        ));
    }
    let header = match ty {
        ImageType::Jpeg => container::jpeg_header(input),
        ImageType::Png => container::png_header(input),
        ImageType::Gif => container::walk_gif(input).map(|g| g.header),
        ImageType::Webp => container::webp_header(input),
        ImageType::Heic | ImageType::Heif | ImageType::Avif => container::heif_header(input),
    }
    .map_err(decode_failed)?;
    check_limits(&header, opts)?;

    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, Rejection> {
        let path = out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| decode_failed(format!("writing {name}: {e}")))?;
        Ok(path)
    };

    let (image, original_bytes, original_type, lossless) = match ty {
        ImageType::Jpeg => {
            let (image, orientation, icc) = decode(input, ImageFormat::Jpeg, &header)?;
            if orientation == image::metadata::Orientation::NoTransforms {
                let clean = container::strip_jpeg(input).map_err(decode_failed)?;
                // What is served must decode to the same pixels.
                let (again, _, _) = decode(&clean, ImageFormat::Jpeg, &header)?;
                if again.as_bytes() != image.as_bytes() {
                    return Err(decode_failed("the stripped JPEG decodes differently"));
                }
                (image, clean, "image/jpeg", true)
            } else {
                let mut image = image;
                image.apply_orientation(orientation);
                let bytes = encode_jpeg(&image, opts.jpeg_quality, icc)?;
                (image, bytes, "image/jpeg", false)
            }
        }
        ImageType::Png => {
            let (mut image, orientation, icc) = decode(input, ImageFormat::Png, &header)?;
            image.apply_orientation(orientation);
            let bytes = encode_png(&image, icc)?;
            (image, bytes, "image/png", false)
        }
        ImageType::Webp => {
            let (mut image, orientation, _) = decode(input, ImageFormat::WebP, &header)?;
            image.apply_orientation(orientation);
            let bytes = encode_webp(&image)?;
            (image, bytes, "image/webp", false)
        }
        ImageType::Gif => {
            // Re-written block by block (every frame kept as it was); the
            // first frame stands for the image in variants.
            let walk = container::walk_gif(input).map_err(decode_failed)?;
            let (image, _, _) = decode(&walk.clean, ImageFormat::Gif, &header)?;
            (image, walk.clean, "image/gif", true)
        }
        ImageType::Heic | ImageType::Heif if opts.heif_original == HeifOriginal::Keep => {
            // What is decoded (for the size, variants and thumbhash) is
            // what is served: a re-written file that libheif cannot read
            // fails here, not in a client.
            let clean = crate::heif::strip_heif(input).map_err(decode_failed)?;
            let png = heif_to_png(&clean, opts, out_dir)?;
            let png_header = container::png_header(&png).map_err(decode_failed)?;
            check_limits(&png_header, opts)?;
            // libheif applies the file's rotation and mirroring itself, so
            // the decoded size is the upright one.
            let (image, _, _) = decode(&png, ImageFormat::Png, &png_header)?;
            (image, clean, ty.mime(), true)
        }
        ImageType::Heic | ImageType::Heif | ImageType::Avif => {
            let png = heif_to_png(input, opts, out_dir)?;
            let png_header = container::png_header(&png).map_err(decode_failed)?;
            check_limits(&png_header, opts)?;
            // libheif applies the file's rotation and mirroring itself.
            let (image, _, icc) = decode(&png, ImageFormat::Png, &png_header)?;
            let bytes = encode_jpeg(&image, opts.jpeg_quality, icc)?;
            (image, bytes, "image/jpeg", false)
        }
    };
    let path = write("original", &original_bytes)?;
    let original = OutputFile {
        name: "original".into(),
        path,
        content_type: original_type.into(),
        width: image.width(),
        height: image.height(),
    };
    let rgb = flatten(&image);
    let mut variants = Vec::new();
    for spec in &opts.variants {
        let small = resize_to(&rgb, spec.long_side)?;
        let img = DynamicImage::ImageRgb8(small);
        let bytes = match spec.format {
            VariantFormat::Jpeg => encode_jpeg(&img, opts.jpeg_quality, None)?,
            VariantFormat::Webp => encode_webp(&img)?,
        };
        let path = write(
            &format!("{}.{}", spec.name, spec.format.extension()),
            &bytes,
        )?;
        variants.push(OutputFile {
            name: spec.name.clone(),
            path,
            content_type: spec.format.mime().into(),
            width: img.width(),
            height: img.height(),
        });
    }
    let thumbhash = thumbhash_of(&image)?;
    Ok(Processed {
        sniffed: ty,
        original,
        lossless,
        variants,
        thumbhash,
    })
}

fn check_limits(h: &Header, opts: &Options) -> Result<(), Rejection> {
    if h.width == 0 || h.height == 0 {
        return Err(decode_failed("the header says the image is empty"));
    }
    let pixels = u64::from(h.width) * u64::from(h.height);
    if h.width > opts.max_side || h.height > opts.max_side || pixels > opts.max_pixels {
        return Err(reject(
            RejectCode::TooManyPixels,
            format!(
                "{}x{} ({pixels} pixels); the limit is {} pixels, {} a side",
                h.width, h.height, opts.max_pixels, opts.max_side
            ),
        ));
    }
    if h.frames > opts.max_frames {
        return Err(reject(
            RejectCode::TooManyFrames,
            format!("{} frames; the limit is {}", h.frames, opts.max_frames),
        ));
    }
    Ok(())
}

pub type Decoded = (DynamicImage, image::metadata::Orientation, Option<Vec<u8>>);

/// Decodes with the decoder's limits set to the header's size, so a header
/// that lies cannot make the decoder allocate more.
pub fn decode(bytes: &[u8], format: ImageFormat, h: &Header) -> Result<Decoded, Rejection> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(h.width.max(1));
    limits.max_image_height = Some(h.height.max(1));
    limits.max_alloc =
        Some((u64::from(h.width) * u64::from(h.height)).saturating_mul(8) + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_failed)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(decode_failed)?;
    Ok((image, orientation, icc))
}

pub fn encode_jpeg(
    img: &DynamicImage,
    quality: u8,
    icc: Option<Vec<u8>>,
) -> Result<Vec<u8>, Rejection> {
    let rgb = flatten(img);
    let mut out = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
    if let Some(icc) = icc {
        // Colour, not metadata: kept so the pixels mean what they meant.
        let _ = enc.set_icc_profile(icc);
    }
    enc.write_image(
        rgb.as_raw(),
        rgb.width(),
        rgb.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(decode_failed)?;
    Ok(out)
}

fn encode_png(img: &DynamicImage, icc: Option<Vec<u8>>) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    let mut enc = PngEncoder::new(&mut out);
    if let Some(icc) = icc {
        let _ = enc.set_icc_profile(icc);
    }
    let img = if img.color().has_alpha() {
        DynamicImage::ImageRgba8(img.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    };
    enc.write_image(
        img.as_bytes(),
        img.width(),
        img.height(),
        img.color().into(),
    )
    .map_err(decode_failed)?;
    Ok(out)
}

fn encode_webp(img: &DynamicImage) -> Result<Vec<u8>, Rejection> {
    let img = if img.color().has_alpha() {
        DynamicImage::ImageRgba8(img.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(
            img.as_bytes(),
            img.width(),
            img.height(),
            img.color().into(),
        )
        .map_err(decode_failed)?;
    Ok(out)
}

/// RGB over white: JPEG has no alpha, and transparent pixels should not
/// come out black.
pub fn flatten(img: &DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

fn fit(width: u32, height: u32, long_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= long_side {
        return (width, height);
    }
    let scale = |v: u32| {
        ((u64::from(v) * u64::from(long_side) + u64::from(long) / 2) / u64::from(long)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

pub fn resize_to(rgb: &RgbImage, long_side: u32) -> Result<RgbImage, Rejection> {
    let (w, h) = fit(rgb.width(), rgb.height(), long_side);
    if (w, h) == rgb.dimensions() {
        return Ok(rgb.clone());
    }
    let src = fir::images::ImageRef::new(
        rgb.width(),
        rgb.height(),
        rgb.as_raw(),
        fir::PixelType::U8x3,
    )
    .map_err(decode_failed)?;
    let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8x3);
    let opts = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    fir::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(decode_failed)?;
    RgbImage::from_raw(w, h, dst.into_vec()).ok_or_else(|| decode_failed("resize buffer size"))
}

/// ThumbHash works on at most 100×100 pixels.
pub fn thumbhash_of(img: &DynamicImage) -> Result<String, Rejection> {
    let small = resize_to(&flatten(img), 100)?;
    let rgba = DynamicImage::ImageRgb8(small).to_rgba8();
    let hash =
        thumbhash::rgba_to_thumb_hash(rgba.width() as usize, rgba.height() as usize, rgba.as_raw());
    Ok(base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Decodes a HEIF-family file with libheif's `heif-convert` (a grandchild
/// of the broker, under the worker's limits) into a PNG.
fn heif_to_png(input: &[u8], opts: &Options, out_dir: &Path) -> Result<Vec<u8>, Rejection> {
    let src = out_dir.join("heif-input");
    let dst = out_dir.join("heif-decoded.png");
    std::fs::write(&src, input).map_err(decode_failed)?;
    let out = std::process::Command::new(&opts.heif_decoder)
        .arg("--quiet")
        .arg(&src)
        .arg(&dst)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| decode_failed(format!("running {}: {e}", opts.heif_decoder)))?;
    let _ = std::fs::remove_file(&src);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(decode_failed(format!(
            "libheif could not decode the image ({}): {}",
            out.status,
            err.chars().take(300).collect::<String>()
        )));
    }
    let png = std::fs::read(&dst).map_err(decode_failed)?;
    let _ = std::fs::remove_file(&dst);
    Ok(png)
}

/// The pipeline's steps one at a time, for `benches/photo.rs`; not API.
#[doc(hidden)]
pub mod steps {
    pub use super::{Decoded, decode, encode_jpeg, flatten, resize_to, thumbhash_of};
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(4032, 3024, 256), (256, 192));
        assert_eq!(fit(3024, 4032, 1280), (960, 1280));
        assert_eq!(fit(100, 50, 256), (100, 50));
        assert_eq!(fit(10000, 1, 256), (256, 1));
    }
}
