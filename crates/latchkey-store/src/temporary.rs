//! Scoped temporary credentials for the `credentials` grant mode: write-only
//! keys limited to one user's prefix, from whichever source the store has.
//!
//! - The embedded store: the broker mints them itself from the store's root
//!   secret, and the store checks them (`latchkey_sigv4::temporary`).
//! - AWS, MinIO, Ceph: STS `AssumeRole` with a session policy that allows
//!   only `PutObject` and the multipart calls on `arn:aws:s3:::{bucket}/{prefix}*`.
//!   The request is a SigV4-signed form POST made with our own signer (the
//!   `aws-sdk-sts` crate would add a second SDK for one call).
//! - Garage and other stores without STS: none; the broker refuses the mode
//!   through the `temporary_credentials` capability before it gets here.

use std::time::Duration;

use latchkey_domain::Secret;
use latchkey_sigv4::temporary::{TokenKey, TokenScope};
use latchkey_sigv4::{Credentials, Signer};
use sha2::Digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::StoreError;

/// STS refuses sessions shorter than 15 minutes.
pub const STS_MIN_SECS: u64 = 900;
/// And longer than 12 hours (the role's own maximum may be lower).
pub const STS_MAX_SECS: u64 = 43_200;

/// What the credentials are for.
#[derive(Clone, Debug)]
pub struct CredentialRequest<'a> {
    /// Keys written must start with this (a user's prefix; never empty).
    pub prefix: &'a str,
    /// When the caller wants them to stop working. STS may stretch this up
    /// to its 15-minute minimum; the answer says what was granted.
    pub expires_at: OffsetDateTime,
    pub now: OffsetDateTime,
    /// Distinguishes grants (and names the STS session): `[A-Za-z0-9_-]{1,64}`.
    pub nonce: &'a str,
}

/// Credentials to hand to a client. Only the access key id is safe to log.
#[derive(Clone, Debug)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: OffsetDateTime,
}

/// How to call STS.
#[derive(Clone, Debug)]
pub struct StsConfig {
    /// `https://sts.{region}.amazonaws.com` on AWS; MinIO and Ceph answer STS
    /// on their S3 endpoint.
    pub endpoint: String,
    pub region: String,
    pub role_arn: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Where a store's temporary credentials come from.
pub enum CredentialIssuer {
    /// The embedded store: minted here, checked there, from one root secret.
    Minted(TokenKey),
    Sts {
        config: StsConfig,
        http: reqwest::Client,
    },
}

impl std::fmt::Debug for CredentialIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Minted(_) => f.write_str("CredentialIssuer::Minted"),
            Self::Sts { config, .. } => write!(f, "CredentialIssuer::Sts({})", config.endpoint),
        }
    }
}

impl CredentialIssuer {
    /// For the embedded store whose root secret is `root_secret`.
    pub fn minted(root_secret: &Secret) -> Self {
        Self::Minted(TokenKey::derive(root_secret))
    }

    pub fn sts(config: StsConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Self::Sts { config, http }
    }

    pub async fn issue(
        &self,
        req: &CredentialRequest<'_>,
    ) -> Result<TemporaryCredentials, StoreError> {
        if req.prefix.is_empty() {
            return Err(StoreError::Refused(
                "temporary credentials need a non-empty prefix".into(),
            ));
        }
        match self {
            Self::Minted(key) => {
                let minted = key
                    .mint(&TokenScope {
                        prefix: req.prefix.to_owned(),
                        expires_at: req.expires_at,
                        nonce: req.nonce.to_owned(),
                    })
                    .map_err(|e| StoreError::Refused(e.to_string()))?;
                Ok(TemporaryCredentials {
                    access_key_id: minted.access_key_id,
                    secret_access_key: minted.secret_access_key,
                    session_token: minted.session_token,
                    expiration: minted.expires_at,
                })
            }
            Self::Sts { config, http } => assume_role(config, http, req).await,
        }
    }
}

/// The session policy: uploads (single and multipart) under the prefix only.
pub fn session_policy(bucket: &str, prefix: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": [
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts"
            ],
            "Resource": [format!("arn:aws:s3:::{bucket}/{prefix}*")]
        }]
    })
    .to_string()
}

/// The session length STS is asked for: what the caller wants, stretched to
/// STS's minimum and cut to its maximum.
pub fn sts_duration(req: &CredentialRequest<'_>) -> u64 {
    let wanted = (req.expires_at - req.now).whole_seconds().max(0) as u64;
    wanted.clamp(STS_MIN_SECS, STS_MAX_SECS)
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                latchkey_sigv4::uri_encode(k),
                latchkey_sigv4::uri_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn assume_role(
    config: &StsConfig,
    http: &reqwest::Client,
    req: &CredentialRequest<'_>,
) -> Result<TemporaryCredentials, StoreError> {
    let session_name: String = format!("latchkey-{}", req.nonce).chars().take(64).collect();
    let duration = sts_duration(req).to_string();
    let policy = session_policy(&config.bucket, req.prefix);
    let body = form(&[
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", &config.role_arn),
        ("RoleSessionName", &session_name),
        ("DurationSeconds", &duration),
        ("Policy", &policy),
    ]);
    let url = format!("{}/", config.endpoint.trim_end_matches('/'));
    let signer = Signer::with_service(
        Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose(),
        ),
        &config.region,
        "sts",
    );
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let payload_hash = hex_sha256(body.as_bytes());
    let signed = signer
        .sign_headers(
            "POST",
            &url,
            &[("content-type", content_type)],
            &payload_hash,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| StoreError::Refused(format!("signing the STS request: {e}")))?;
    let mut request = http.post(&url).header("content-type", content_type);
    for (k, v) in signed {
        request = request.header(k, v);
    }
    let res = request
        .body(body)
        .send()
        .await
        .map_err(|_| StoreError::Unavailable("STS could not be reached".into()))?;
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|_| StoreError::Unavailable("STS answer could not be read".into()))?;
    if status.is_server_error() {
        return Err(StoreError::Unavailable(format!("STS answered {status}")));
    }
    if !status.is_success() {
        let code = xml_value(&text, "Code").unwrap_or_else(|| status.to_string());
        return Err(StoreError::Refused(format!("STS AssumeRole: {code}")));
    }
    parse_assume_role(&text)
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex_lower(&sha2::Sha256::digest(bytes))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of the first `<tag>…</tag>`, with XML's five entities undone.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The `Credentials` of an `AssumeRoleResponse`.
pub fn parse_assume_role(xml: &str) -> Result<TemporaryCredentials, StoreError> {
    let missing = |what: &str| StoreError::Refused(format!("STS answer has no {what}"));
    let creds = xml_value(xml, "Credentials").ok_or_else(|| missing("Credentials"))?;
    let expiration = xml_value(&creds, "Expiration").ok_or_else(|| missing("Expiration"))?;
    Ok(TemporaryCredentials {
        access_key_id: xml_value(&creds, "AccessKeyId").ok_or_else(|| missing("AccessKeyId"))?,
        secret_access_key: Secret::new(
            xml_value(&creds, "SecretAccessKey").ok_or_else(|| missing("SecretAccessKey"))?,
        ),
        session_token: Secret::new(
            xml_value(&creds, "SessionToken").ok_or_else(|| missing("SessionToken"))?,
        ),
        expiration: OffsetDateTime::parse(&expiration, &Rfc3339)
            .map_err(|_| missing("valid Expiration"))?,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    // The shape AWS documents for AssumeRole (values from its example).
    const ANSWER: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>DevUser123</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/John</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:John</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764&amp;bNrC</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <PackedPolicySize>8</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

    #[test]
    fn parses_assume_role_answer() {
        let c = parse_assume_role(ANSWER).unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            c.session_token.expose(),
            "AQoDYXdzEPT//////////wEXAMPLEtc764&bNrC"
        );
        assert_eq!(c.expiration, datetime!(2019-11-09 13:34:41 UTC));
        assert!(parse_assume_role("<Error><Code>AccessDenied</Code></Error>").is_err());
    }

    #[test]
    fn policy_is_limited_to_the_prefix() {
        let p: serde_json::Value =
            serde_json::from_str(&session_policy("photos", "u/alice/photo/")).unwrap();
        let st = &p["Statement"][0];
        assert_eq!(st["Resource"][0], "arn:aws:s3:::photos/u/alice/photo/*");
        let actions: Vec<&str> = st["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(actions.contains(&"s3:PutObject"));
        assert!(
            !actions
                .iter()
                .any(|a| a.contains("Get") || a.contains("Delete"))
        );
    }

    #[test]
    fn sts_duration_is_clamped() {
        let now = datetime!(2030-01-01 0:00 UTC);
        let req = |secs: i64| CredentialRequest {
            prefix: "u/a/",
            expires_at: now + time::Duration::seconds(secs),
            now,
            nonce: "n",
        };
        assert_eq!(sts_duration(&req(60)), 900);
        assert_eq!(sts_duration(&req(3600)), 3600);
        assert_eq!(sts_duration(&req(100_000)), 43_200);
    }

    #[tokio::test]
    async fn minted_credentials_verify() {
        let root = Secret::new("root");
        let now = datetime!(2030-01-01 0:00 UTC);
        let c = CredentialIssuer::minted(&root)
            .issue(&CredentialRequest {
                prefix: "u/alice/file/",
                expires_at: now + time::Duration::minutes(5),
                now,
                nonce: "abc",
            })
            .await
            .unwrap();
        let scope = TokenKey::derive(&root)
            .verify(&c.access_key_id, c.session_token.expose(), now)
            .unwrap();
        assert_eq!(scope.prefix, "u/alice/file/");
        assert_eq!(c.expiration, now + time::Duration::minutes(5));
    }
}
