//! Uploading one file in `credentials` mode, as an app holding scoped
//! temporary credentials would: the broker reserves the upload (its key lies
//! inside the credentials' prefix) and hands out the credentials; this client
//! signs its own PUT to that key with them (SigV4, `x-amz-security-token`
//! included) and sends it. The signature covers the content type, length and
//! sha256, so the store checks the bytes; the caller then completes as usual.
//!
//! Signing here with `latchkey-sigv4` keeps the CLI free of an S3 SDK; any
//! S3 client given the same credentials (boto3, the AWS CLI) works as well.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use latchkey_domain::Sha256Digest;
use latchkey_sigv4::{Credentials, Signer};
use serde::Deserialize;
use time::OffsetDateTime;

use super::http::{Created, PutGrant};

/// `grant.credentials` of a `credentials`-mode answer (the fields the client
/// signs with; the rest stays in the JSON).
#[derive(Deserialize)]
pub struct GrantedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration: OffsetDateTime,
    pub region: String,
    pub prefix: String,
}

impl std::fmt::Debug for GrantedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A presigned PUT for the grant's key, signed with its temporary
/// credentials, as a `put`-shaped grant [`super::upload`] can send.
fn presigned_put(
    created: &Created,
    content_type: &str,
    size: u64,
    sha256_hex: &str,
) -> Result<Created> {
    let grant = &created.grant;
    let creds = grant
        .credentials
        .as_ref()
        .ok_or_else(|| anyhow!("the broker granted no credentials"))?;
    if grant.url.is_empty() {
        bail!("the credentials grant names no object URL");
    }
    let sha = Sha256Digest::parse(sha256_hex).map_err(|_| anyhow!("bad sha256"))?;
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), content_type.to_owned());
    headers.insert("content-length".to_owned(), size.to_string());
    headers.insert("x-amz-checksum-sha256".to_owned(), sha.to_base64());
    let signed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let now = OffsetDateTime::now_utc();
    let ttl = (creds.expiration - now).whole_seconds().clamp(1, 3600) as u64;
    let signer = Signer::new(
        Credentials::new(creds.access_key_id.clone(), creds.secret_access_key.clone())
            .with_session_token(creds.session_token.clone()),
        &creds.region,
    );
    let url = signer
        .presign("PUT", &grant.url, &signed, &[], ttl, now)
        .context("signing the PUT with the temporary credentials")?;
    Ok(Created {
        id: created.id.clone(),
        grant: PutGrant {
            method: "PUT".into(),
            url,
            headers,
            fields: BTreeMap::new(),
            credentials: None,
        },
    })
}

pub async fn put_with_credentials(
    http: &reqwest::Client,
    path: &Path,
    size: u64,
    sha256_hex: &str,
    content_type: &str,
    created: &Created,
) -> Result<()> {
    let put = presigned_put(created, content_type, size, sha256_hex)?;
    super::upload::put_to_store(http, path, size, &put).await
}
