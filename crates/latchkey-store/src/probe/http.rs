//! Raw requests as a grant holder sends them, and short descriptions of
//! what the store answered. Nothing here ever formats a URL: presigned URLs
//! are bearer credentials, and these strings end up in reports and logs.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use base64::Engine;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Ctx;

/// A store's answer, reduced to what the probes judge by.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// The S3 error `<Code>`, when the body carried one.
    pub code: Option<String>,
    pub etag: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `403 SignatureDoesNotMatch`, or just `200`.
    pub fn summary(&self) -> String {
        match &self.code {
            Some(code) => format!("{} {code}", self.status),
            None => self.status.to_string(),
        }
    }
}

/// Sends the request and reads the whole (small) answer.
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let resp = req.send().await.map_err(describe)?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    let body = resp.text().await.map_err(describe)?;
    Ok(Answer {
        status,
        code: xml_text(&body, "Code"),
        etag,
        body,
    })
}

/// reqwest's own messages name the URL, which here carries a signature.
pub(crate) fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        err.to_string()
    }
}

/// A presigned PUT of `body` to `key`, signing `signed` headers (which
/// may include `content-length`; reqwest sends the body's real length) and
/// sending `sent` ones. Signing one value and sending another is how the
/// probes ask "does the store check this?".
pub(crate) async fn presigned_put(
    ctx: &Ctx<'_>,
    key: &str,
    signed: &[(&str, &str)],
    sent: &[(&str, &str)],
    body: Vec<u8>,
    now: OffsetDateTime,
    expires_secs: u64,
) -> Result<Answer, String> {
    let url = ctx
        .signer
        .presign(
            "PUT",
            &ctx.endpoint.object_url(key),
            signed,
            &[],
            expires_secs,
            now,
        )
        .map_err(|e| e.to_string())?;
    let mut req = ctx.http.put(url).body(body);
    for (name, value) in sent {
        req = req.header(*name, *value);
    }
    send(req).await
}

/// The object's size, or `None` when it does not exist.
pub(crate) async fn head_size(ctx: &Ctx<'_>, key: &str) -> Result<Option<u64>, String> {
    match ctx
        .sdk
        .head_object()
        .bucket(ctx.bucket())
        .key(key)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
        Err(e) if sdk_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(format!("HEAD {key}: {}", sdk_error(&e))),
    }
}

/// Whether a refusal really kept the object out: a store that answers 4xx
/// after writing anyway would otherwise look like it enforces the rule.
pub(crate) async fn refused_and_absent(
    ctx: &Ctx<'_>,
    key: &str,
    answer: &Answer,
) -> Result<bool, String> {
    Ok(!answer.ok() && head_size(ctx, key).await?.is_none())
}

pub(crate) fn sdk_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        SdkError::ResponseError(re) => Some(re.raw().status().as_u16()),
        _ => None,
    }
}

pub(crate) fn sdk_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// `501 NotImplemented`, `404` or `connection failed`: never the request.
pub(crate) fn sdk_error<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match (sdk_status(err), sdk_code(err)) {
        (Some(status), Some(code)) => format!("{status} {code}"),
        (Some(status), None) => status.to_string(),
        _ => match err {
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(_) => "connection failed".to_owned(),
            _ => "request failed".to_owned(),
        },
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&Sha256::digest(data))
}

pub(crate) fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded. S3 and
/// STS answers are small and flat enough that this is all the parsing the
/// probes need (an error `<Code>`, the three credential fields).
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(unescape(xml[start..start + len].trim()))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_error_codes_and_credentials() {
        let err = "<?xml version=\"1.0\"?><Error><Code>PreconditionFailed</Code>\
                   <Message>At least one of the preconditions</Message></Error>";
        assert_eq!(xml_text(err, "Code").as_deref(), Some("PreconditionFailed"));
        assert_eq!(xml_text(err, "Nope"), None);
        let sts = "<AssumeRoleResponse><AssumeRoleResult><Credentials>\
                   <AccessKeyId>ASIA1</AccessKeyId><SessionToken>a+b/c&amp;=</SessionToken>\
                   </Credentials></AssumeRoleResult></AssumeRoleResponse>";
        assert_eq!(xml_text(sts, "SessionToken").as_deref(), Some("a+b/c&="));
    }

    #[test]
    fn digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_b64(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
