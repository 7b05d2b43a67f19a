//! The photo pipeline (DESIGN §7), pure and synchronous: what the bytes
//! really are ([`sniff`]), whether they may be decoded at all (limits read
//! from the header, before any pixel buffer exists), and the clean,
//! upright, metadata-free original plus variants and a thumbhash
//! ([`process`]). [`worker`] runs it in a child process with memory, CPU
//! and wall-clock limits, so a hostile file fails its own upload and
//! nothing else.
//!
//! Formats and libraries:
//! - JPEG, PNG, WebP, GIF: the `image` crate with only those codecs (pure
//!   Rust decoders), resizing with `fast_image_resize`, placeholders with
//!   `thumbhash`.
//! - JPEG without rotation is stripped *losslessly*: segments are walked by
//!   hand ([`container::strip_jpeg`]): EXIF/XMP (APP1), IPTC (APP13), other
//!   APPn and comments go; JFIF (without thumbnail), ICC and Adobe stay;
//!   scan data is copied untouched and nothing after EOI survives (so a
//!   polyglot's appended archive or script is gone). A JPEG whose EXIF
//!   orientation is not 1 is decoded, turned upright and re-encoded.
//! - GIF is re-written block by block the same way (frames untouched;
//!   comments and application extensions other than looping dropped); its
//!   first frame makes the variants.
//! - PNG and WebP are decoded, oriented and re-encoded (PNG; lossless
//!   WebP), which drops every metadata chunk.
//! - HEIC/HEIF/AVIF are decoded by libheif through Debian's `heif-convert`
//!   (`libheif-examples`, libheif 1.15.1 with Debian's security patches)
//!   run inside the limited worker, and served as JPEG (the clean original
//!   too, unless the profile keeps HEIC/HEIF originals: then the uploaded
//!   file is re-written without its metadata items by [`heif::strip_heif`],
//!   bounds-checked Rust that never touches the coded image, and that
//!   re-written file is what libheif decodes for the variants). Why not `libheif-rs`: its 3.x releases need libheif ≥ 1.17 (not
//!   in Debian 12) or its `embedded-libheif` feature, which compiles
//!   libheif 1.23 with cmake and a C++ toolchain on every clean build —
//!   minutes on a two-core CI machine — and would put an FFI decoder into
//!   the worker's address space anyway. A separate process under the same
//!   limits isolates libheif's known heap-overflow CVEs at least as well.

pub mod container;
pub mod heif;
mod pipeline;
pub mod sniff;
pub mod worker;

pub use pipeline::{
    HeifOriginal, Options, OutputFile, Processed, RejectCode, Rejection, VariantFormat,
    VariantSpec, default_variants, process, steps,
};
pub use sniff::{ImageType, sniff};
pub use worker::{Isolation, Job, RunReport, WorkerReply, run_isolated, worker_main};
