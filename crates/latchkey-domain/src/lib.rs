//! The vocabulary of latchkey: ids, object keys, content types, sizes, profiles
//! and the upload state machine. Everything here is pure — no IO, no clocks
//! read implicitly — so every other crate can rely on these types having been
//! checked once, at the edge.

mod checksum;
mod content_type;
mod duration;
mod ids;
mod key;
mod profile;
mod secret;
mod size;
mod upload;

pub use checksum::{ChecksumError, Sha256Digest};
pub use content_type::{ContentType, ContentTypeError};
pub use duration::{DurationError, parse_duration};
pub use ids::{UploadId, UploadIdError, UserId, UserIdError};
pub use key::{KeyTemplate, KeyTemplateError, ObjectKey, extension_for, sanitize_filename};
pub use profile::{
    HeifOriginal, Mode, ModeError, Process, Profile, ProfileName, VariantDef, VariantFormat,
    default_profiles,
};
pub use secret::Secret;
pub use size::{ByteSize, ByteSizeError};
pub use upload::{MediaInfo, MediaVariant, Upload, UploadStatus};
