//! The photo pipeline's worker pool (DESIGN §7). Rows in `processing` are
//! jobs: claimed from the ledger under a lease (so jobs survive a restart
//! and are never run twice at once across instances), run one per isolated
//! child process (`latchkey media-worker`, with memory, CPU and wall-clock
//! limits), and finished through `broker::finish_processing` /
//! `reject_processing`. At most `workers` children run at once; with
//! `workers = 0` the instance only ingests and never claims. A transient
//! failure (the store unreachable) leaves the job leased: it is claimed
//! again when the lease runs out, up to `max_attempts` claims.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use latchkey_api::AppState;
use latchkey_api::broker::{self, ProcessedImage, ProcessedVariant, upload_target};
use latchkey_domain::Upload;
use latchkey_ledger::ProcessingJob;
use latchkey_media::{
    HeifOriginal, Isolation, Job, Options, VariantFormat, VariantSpec, WorkerReply,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::config::{MediaConfig, checked_duration};

/// The pool's settings, validated from `[media]`.
#[derive(Clone, Debug)]
pub struct MediaPool {
    pub workers: usize,
    pub lease: Duration,
    pub poll: Duration,
    pub max_attempts: u32,
    pub isolation: Isolation,
    pub options: Options,
}

impl MediaPool {
    pub fn from_config(c: &MediaConfig) -> anyhow::Result<Self> {
        let command = if c.worker_command.is_empty() {
            let exe = std::env::current_exe()?;
            vec![exe.to_string_lossy().into_owned(), "media-worker".into()]
        } else {
            c.worker_command.clone()
        };
        let format = match c.variant_format.as_str() {
            "webp" => VariantFormat::Webp,
            _ => VariantFormat::Jpeg,
        };
        let variants = [("thumb", c.thumb_size), ("medium", c.medium_size)]
            .into_iter()
            .filter(|(_, size)| *size > 0)
            .map(|(name, long_side)| VariantSpec {
                name: name.into(),
                long_side,
                format,
            })
            .collect();
        Ok(Self {
            workers: c.workers,
            lease: checked_duration(&c.lease),
            poll: checked_duration(&c.poll),
            max_attempts: c.max_attempts.max(1),
            isolation: Isolation {
                command,
                memory_bytes: latchkey_domain::ByteSize::parse(&c.memory_limit)
                    .map(|b| b.0)
                    .unwrap_or(1 << 30),
                cpu_seconds: checked_duration(&c.cpu_limit).as_secs().max(1),
                wall: checked_duration(&c.timeout),
            },
            options: Options {
                max_pixels: c.max_pixels,
                max_side: c.max_side,
                max_frames: c.max_frames,
                variants,
                jpeg_quality: c.jpeg_quality,
                heif_decoder: c.heif_decoder.clone(),
                heif_original: HeifOriginal::Jpeg,
            },
        })
    }
}

/// A profile's own variants (validated by the config), overriding `[media]`.
pub fn profile_variants(defs: &[latchkey_domain::VariantDef]) -> Vec<VariantSpec> {
    defs.iter()
        .map(|d| VariantSpec {
            name: d.name.clone(),
            long_side: d.size,
            format: match d.format {
                latchkey_domain::VariantFormat::Jpeg => VariantFormat::Jpeg,
                latchkey_domain::VariantFormat::Webp => VariantFormat::Webp,
            },
        })
        .collect()
}

/// Claims and runs jobs until the task is aborted.
pub async fn run(state: Arc<AppState>, pool: MediaPool) {
    if pool.workers == 0 {
        return;
    }
    let pool = Arc::new(pool);
    let slots = Arc::new(Semaphore::new(pool.workers));
    loop {
        let free = slots.available_permits();
        let mut claimed = 0;
        if free > 0 {
            match state
                .ledger
                .claim_processing(OffsetDateTime::now_utc(), pool.lease, free as u32)
                .await
            {
                Ok(jobs) => {
                    claimed = jobs.len();
                    for job in jobs {
                        let permit = slots.clone().acquire_owned().await.expect("never closed");
                        let (state, pool) = (state.clone(), pool.clone());
                        tokio::spawn(async move {
                            run_job(&state, &pool, job).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming photo jobs failed"),
            }
        }
        if claimed == 0 {
            tokio::time::sleep(pool.poll).await;
        }
    }
}

/// Waits before the in-place retries of a job that failed transiently;
/// after these the lease decides.
const IN_PLACE_RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(9),
];

/// One job, start to finish. Errors are logged; the lease makes a job that
/// failed transiently come back.
pub async fn run_job(state: &AppState, pool: &MediaPool, job: ProcessingJob) {
    let upload = job.upload;
    let id = upload.id;
    let outcome = if job.attempts > pool.max_attempts {
        tracing::warn!(upload = %id, attempts = job.attempts, "giving up on a photo job");
        broker::reject_processing(state, &upload, "decode_failed").await
    } else {
        // A transient failure (the store busy or briefly unreachable) is
        // retried here a few times first: waiting for the lease to lapse
        // would leave the photo processing for minutes.
        let mut outcome = process(state, pool, &upload).await;
        for wait in IN_PLACE_RETRIES {
            if outcome.is_ok() {
                break;
            }
            tracing::info!(upload = %id, "photo job failed; retrying shortly");
            tokio::time::sleep(wait).await;
            outcome = process(state, pool, &upload).await;
        }
        outcome
    };
    match outcome {
        Ok(Some(row)) => {
            tracing::info!(upload = %id, status = %row.status, reason = ?row.reason, "photo processed")
        }
        Ok(None) => tracing::debug!(upload = %id, "photo job already finished elsewhere"),
        Err(e) => tracing::warn!(upload = %id, error = %e, "photo job failed; it will be retried"),
    }
}

async fn process(
    state: &AppState,
    pool: &MediaPool,
    upload: &Upload,
) -> Result<Option<Upload>, latchkey_api::ApiError> {
    let profile = state.profiles.get(upload.profile.as_str());
    let max = profile.map_or(upload.size, |p| p.max_bytes.0.max(upload.size));
    let mut options = pool.options.clone();
    if let Some(defs) = profile.and_then(|p| p.variants.as_ref()) {
        options.variants = profile_variants(defs);
    }
    options.heif_original = match profile.map(|p| p.heif_original) {
        Some(latchkey_domain::HeifOriginal::Keep) => HeifOriginal::Keep,
        Some(latchkey_domain::HeifOriginal::Jpeg) | None => HeifOriginal::Jpeg,
    };
    let source = upload_target(state, upload);
    let Some(bytes) = state.store.read(&source, max).await? else {
        // The bytes are gone (removed by hand?): nothing to process.
        return broker::reject_processing(state, upload, "object_missing").await;
    };
    let dir = tempfile::tempdir().map_err(|e| latchkey_api::ApiError::Internal(e.to_string()))?;
    let input = dir.path().join("input");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir)
        .and_then(|()| std::fs::write(&input, &bytes))
        .map_err(|e| latchkey_api::ApiError::Internal(format!("media temp files: {e}")))?;
    drop(bytes);
    let job = Job {
        input,
        declared_type: upload.content_type.to_string(),
        out_dir,
        options,
    };
    let isolation = pool.isolation.clone();
    let report =
        tokio::task::spawn_blocking(move || latchkey_media::run_isolated(&isolation, &job))
            .await
            .map_err(|e| latchkey_api::ApiError::Internal(format!("media worker task: {e}")))?
            .map_err(|e| {
                latchkey_api::ApiError::Internal(format!("starting the media worker: {e}"))
            })?;
    tracing::debug!(upload = %upload.id, max_rss_kib = report.max_rss_kib, "media worker done");
    match report.reply {
        WorkerReply::Rejected(r) => {
            tracing::info!(upload = %upload.id, code = %r.code, detail = %r.detail, stderr = %report.stderr, "photo rejected");
            broker::reject_processing(state, upload, r.code.as_str()).await
        }
        WorkerReply::Processed(p) => {
            let read = |path: &PathBuf| {
                std::fs::read(path)
                    .map_err(|e| latchkey_api::ApiError::Internal(format!("media output: {e}")))
            };
            let mut variants = Vec::new();
            for v in &p.variants {
                variants.push(ProcessedVariant {
                    name: v.name.clone(),
                    extension: v
                        .path
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or("jpg")
                        .to_owned(),
                    content_type: v.content_type.clone(),
                    width: v.width,
                    height: v.height,
                    bytes: read(&v.path)?,
                });
            }
            let image = ProcessedImage {
                content_type: p.original.content_type.clone(),
                bytes: read(&p.original.path)?,
                width: p.original.width,
                height: p.original.height,
                thumbhash: p.thumbhash,
                variants,
            };
            broker::finish_processing(state, upload, image).await
        }
    }
}
