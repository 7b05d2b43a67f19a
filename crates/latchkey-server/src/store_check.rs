//! `latchkey store check`: probes the configured store and reports what it
//! enforces, as the `Capabilities` the broker uses to decide which grants are
//! safe (see docs/stores.md).

use anyhow::Context;
use latchkey_store::{ProbeReport, ProbeTarget, probe};

use crate::config::{Config, StoreKind};
use crate::secrets;

/// The probe target the configuration describes. For the embedded store that
/// is the running `latchkey serve` (its folder must not be opened twice).
fn target(config: &Config) -> anyhow::Result<ProbeTarget> {
    let s = &config.store;
    Ok(match s.kind {
        StoreKind::Embedded => {
            let dev = secrets::load_or_create(&config.data_dir)?;
            ProbeTarget {
                endpoint: s
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", s.listen)),
                region: s.region.clone(),
                bucket: s.bucket.clone(),
                path_style: true,
                access_key_id: dev.store_access_key_id,
                secret_access_key: dev.store_secret_access_key,
                sts_endpoint: None,
                sts_role_arn: None,
            }
        }
        StoreKind::S3 => ProbeTarget {
            endpoint: s
                .endpoint
                .clone()
                .context("store.endpoint is required when store.kind = \"s3\"")?,
            region: s.region.clone(),
            bucket: s.bucket.clone(),
            path_style: s.path_style,
            access_key_id: s
                .access_key_id
                .clone()
                .context("store.access_key_id is required")?,
            secret_access_key: s
                .secret_access_key
                .clone()
                .context("store.secret_access_key is required")?,
            sts_endpoint: s.sts_endpoint.clone(),
            sts_role_arn: s.sts_role_arn.clone(),
        },
    })
}

pub async fn store_check(config: &Config) -> anyhow::Result<ProbeReport> {
    let target = target(config)?;
    probe(&target).await.with_context(|| match config.store.kind {
        StoreKind::Embedded => format!(
            "the embedded store at {} did not answer; start `latchkey serve` with the same data dir first",
            target.endpoint
        ),
        StoreKind::S3 => format!("the store at {} could not be reached", target.endpoint),
    })
}
