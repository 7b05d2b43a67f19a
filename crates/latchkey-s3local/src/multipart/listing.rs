//! Listing multipart state: `ListParts` and `ListMultipartUploads`.

use s3s::S3Result;
use s3s::dto::{
    CommonPrefix, ETag, ListMultipartUploadsInput, ListMultipartUploadsOutput, ListPartsInput,
    ListPartsOutput, MultipartUpload, Part, StorageClass,
};

use super::{MAX_LISTED, initiator, load_parts, ms_to_ts};
use crate::backend::{Backend, owner};

pub(crate) async fn list_parts(
    backend: &Backend,
    input: ListPartsInput,
) -> S3Result<ListPartsOutput> {
    backend.uploads.get(&input.key, &input.upload_id)?;
    let parts = load_parts(backend, &input.upload_id).await?;
    let max = input.max_parts.unwrap_or(MAX_LISTED).clamp(0, MAX_LISTED) as usize;
    let after = input.part_number_marker.unwrap_or(0);
    let mut listed: Vec<Part> = Vec::new();
    let mut truncated = false;
    for part in parts.values().filter(|p| p.number > after) {
        if listed.len() == max {
            truncated = true;
            break;
        }
        listed.push(Part {
            part_number: Some(part.number),
            e_tag: Some(ETag::Strong(part.etag.clone())),
            size: i64::try_from(part.size).ok(),
            last_modified: Some(ms_to_ts(part.last_modified_ms)),
            ..Default::default()
        });
    }
    Ok(ListPartsOutput {
        bucket: Some(backend.bucket.clone()),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max as i32),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: listed.last().and_then(|p| p.part_number),
        is_truncated: Some(truncated),
        parts: Some(listed),
        initiator: Some(initiator()),
        owner: Some(owner()),
        storage_class: Some(StorageClass::from(StorageClass::STANDARD.to_owned())),
        ..Default::default()
    })
}

pub(crate) fn list_uploads(
    backend: &Backend,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let max = input.max_uploads.unwrap_or(MAX_LISTED).clamp(0, MAX_LISTED) as usize;
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input.upload_id_marker.clone();
    let mut uploads: Vec<MultipartUpload> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut next: Option<(String, String)> = None;
    for ((key, id), meta) in backend.uploads.map().iter() {
        let after_marker = match &id_marker {
            Some(m) if !key_marker.is_empty() => {
                (key.as_str(), id.as_str()) > (key_marker.as_str(), m.as_str())
            }
            _ => key.as_str() > key_marker.as_str() || key_marker.is_empty(),
        };
        if !after_marker || !key.starts_with(prefix.as_str()) {
            continue;
        }
        let rolled = delimiter.as_deref().and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_owned())
        });
        if rolled.is_some() && prefixes.last() == rolled.as_ref() {
            continue;
        }
        if uploads.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        next = Some((key.clone(), id.clone()));
        match rolled {
            Some(cp) => prefixes.push(cp),
            None => uploads.push(MultipartUpload {
                key: Some(key.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(ms_to_ts(meta.initiated_ms)),
                initiator: Some(initiator()),
                owner: Some(owner()),
                storage_class: Some(StorageClass::from(StorageClass::STANDARD.to_owned())),
                ..Default::default()
            }),
        }
    }
    let (next_key_marker, next_upload_id_marker) = match next.filter(|_| truncated) {
        Some((k, id)) => (Some(k), Some(id)),
        None => (None, None),
    };
    Ok(ListMultipartUploadsOutput {
        bucket: Some(backend.bucket.clone()),
        prefix: input.prefix,
        delimiter,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker,
        next_upload_id_marker,
        uploads: Some(uploads),
        common_prefixes: Some(
            prefixes
                .into_iter()
                .map(|p| CommonPrefix { prefix: Some(p) })
                .collect(),
        ),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}
