//! Where the `credentials` mode's temporary keys come from, per store kind:
//! minted by the broker for the embedded store (which checks them with the
//! same root secret), STS `AssumeRole` for an S3 store with
//! `store.sts_role_arn`, none otherwise (Garage has no STS).

use latchkey_domain::Secret;
use latchkey_store::Capabilities;
use latchkey_store::temporary::{CredentialIssuer, StsConfig};

use crate::config::{StoreConfig, StoreKind};

/// An S3 store's capabilities: the configured table (or everything), except
/// that temporary credentials need an STS role to assume.
pub(crate) fn s3_capabilities(s: &StoreConfig) -> Capabilities {
    let mut caps = s.capabilities.clone().unwrap_or(Capabilities::FULL);
    caps.temporary_credentials &= s.sts_role_arn.is_some();
    caps
}

/// The issuer for this store, if it has one. `endpoint`, `access_key_id` and
/// `secret` are the broker's own view of the store.
pub(crate) fn issuer(
    s: &StoreConfig,
    endpoint: &str,
    access_key_id: &str,
    secret: &Secret,
) -> Option<CredentialIssuer> {
    match s.kind {
        StoreKind::Embedded => Some(CredentialIssuer::minted(secret)),
        StoreKind::S3 => s.sts_role_arn.as_ref().map(|role| {
            CredentialIssuer::sts(StsConfig {
                endpoint: s
                    .sts_endpoint
                    .clone()
                    .unwrap_or_else(|| endpoint.to_owned()),
                region: s.region.clone(),
                role_arn: role.clone(),
                bucket: s.bucket.clone(),
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret.clone(),
            })
        }),
    }
}
