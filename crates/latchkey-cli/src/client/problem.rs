//! The two kinds of failure a client reports: the broker's RFC 9457 problems
//! and the store's S3 XML errors. Both render as one line a person can act on
//! and neither ever shows a token or a presigned URL's signature.

use std::fmt;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// A broker error, from an `application/problem+json` body when there was
/// one, otherwise from the status line and the start of the body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProblemError {
    /// The problem type URI (`about:blank` or a documentation link).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// The HTTP status; taken from the response, not trusted from the body.
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: Option<String>,
    /// The stable machine-readable code (`too_large`, `type_not_allowed`, …).
    #[serde(default)]
    pub code: Option<String>,
}

impl ProblemError {
    /// Builds the error for a non-2xx broker response. A body that is not a
    /// problem document (a proxy's HTML page, say) still yields a useful line.
    pub fn from_response(status: StatusCode, content_type: Option<&str>, body: &str) -> Self {
        let is_json = content_type.is_some_and(|ct| ct.contains("json"));
        let parsed = if is_json {
            serde_json::from_str::<ProblemError>(body).ok()
        } else {
            None
        };
        let mut problem = parsed.unwrap_or_else(|| ProblemError {
            detail: snippet(body),
            ..ProblemError::default()
        });
        problem.status = status.as_u16();
        if problem.title.is_none() {
            problem.title = status.canonical_reason().map(str::to_owned);
        }
        problem
    }
}

impl fmt::Display for ProblemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code is what scripts and docs refer to, so it leads; the detail
        // is the sentence written for people.
        let label = self
            .code
            .as_deref()
            .or(self.title.as_deref())
            .unwrap_or("error");
        let message = self
            .detail
            .as_deref()
            .or(self.title.as_deref())
            .filter(|m| !m.is_empty() && *m != label);
        match message {
            Some(message) => write!(f, "{label}: {message} (HTTP {})", self.status),
            None => write!(f, "{label} (HTTP {})", self.status),
        }
    }
}

impl std::error::Error for ProblemError {}

/// A store (S3) error answering a presigned request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    pub method: String,
    /// Already redacted with [`redact_url`].
    pub url: String,
    pub status: u16,
    /// The S3 `<Code>`, e.g. `SignatureDoesNotMatch` or `PreconditionFailed`.
    pub code: Option<String>,
    /// The S3 `<Message>`.
    pub message: Option<String>,
}

impl StoreError {
    pub fn from_response(method: &str, url: &Url, status: StatusCode, body: &str) -> Self {
        StoreError {
            method: method.to_owned(),
            url: redact_url(url.as_str()),
            status: status.as_u16(),
            // Only these two elements are shown: others (`StringToSign`,
            // `CanonicalRequest`, `AWSAccessKeyId`) are noise at best.
            code: xml_element(body, "Code"),
            message: xml_element(body, "Message"),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store refused {} {}: ", self.method, self.url)?;
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "{code}: {message}")?,
            (Some(code), None) => write!(f, "{code}")?,
            (None, Some(message)) => write!(f, "{message}")?,
            (None, None) => {
                let reason = StatusCode::from_u16(self.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error");
                write!(f, "{reason}")?
            }
        }
        write!(f, " (HTTP {})", self.status)
    }
}

impl std::error::Error for StoreError {}

/// Scheme, host, port and path only. Presigned URLs carry their credential
/// and signature in the query, and a URL could carry userinfo; neither may
/// reach a terminal or a log.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            match url.port() {
                Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
                None => format!("{}://{host}{}", url.scheme(), url.path()),
            }
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// The text of the first `<name>…</name>` element, entities decoded. S3
/// error documents are flat and small, so a full XML parser is not needed.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&close)?;
    let text = body[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The start of a non-problem body, on one line, so an HTML error page does
/// not flood the terminal.
fn snippet(body: &str) -> Option<String> {
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return None;
    }
    let mut out: String = flat.chars().take(200).collect();
    if out.len() < flat.len() {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBLEM: &str = r#"{"type":"about:blank","title":"Content type not allowed","status":400,
        "detail":"image/svg+xml is not allowed for profile photo","code":"type_not_allowed"}"#;

    #[test]
    fn problem_json_displays_code_detail_and_status() {
        let p = ProblemError::from_response(
            StatusCode::BAD_REQUEST,
            Some("application/problem+json"),
            PROBLEM,
        );
        assert_eq!(p.code.as_deref(), Some("type_not_allowed"));
        assert_eq!(
            p.to_string(),
            "type_not_allowed: image/svg+xml is not allowed for profile photo (HTTP 400)"
        );
    }

    #[test]
    fn status_comes_from_the_response_not_the_body() {
        let p = ProblemError::from_response(
            StatusCode::CONFLICT,
            Some("application/problem+json"),
            r#"{"status":200,"code":"expired","detail":"the grant expired"}"#,
        );
        assert_eq!(p.to_string(), "expired: the grant expired (HTTP 409)");
    }

    #[test]
    fn problem_without_code_or_detail_falls_back_to_title() {
        let p = ProblemError::from_response(
            StatusCode::UNAUTHORIZED,
            Some("application/problem+json"),
            r#"{"title":"Unauthorized","status":401}"#,
        );
        assert_eq!(p.to_string(), "Unauthorized (HTTP 401)");
        let p = ProblemError::from_response(
            StatusCode::NOT_FOUND,
            Some("application/problem+json"),
            r#"{"status":404,"code":"not_found"}"#,
        );
        assert_eq!(p.to_string(), "not_found: Not Found (HTTP 404)");
    }

    #[test]
    fn non_problem_bodies_still_make_a_line() {
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(500));
        let p = ProblemError::from_response(StatusCode::BAD_GATEWAY, Some("text/html"), &html);
        let shown = p.to_string();
        assert!(
            shown.starts_with("Bad Gateway: <html> <body>xxx"),
            "{shown}"
        );
        assert!(shown.ends_with("… (HTTP 502)"), "{shown}");
        let p = ProblemError::from_response(StatusCode::INTERNAL_SERVER_ERROR, None, "");
        assert_eq!(p.to_string(), "Internal Server Error (HTTP 500)");
        // Broken JSON is treated as text rather than failing the parse.
        let p = ProblemError::from_response(StatusCode::BAD_REQUEST, Some("application/json"), "{");
        assert_eq!(p.to_string(), "Bad Request: { (HTTP 400)");
    }

    #[test]
    fn store_errors_show_s3_code_and_message_and_no_signature() {
        let url = Url::parse(
            "http://127.0.0.1:9000/bucket/u/1/photo/abc.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=deadbeef",
        )
        .unwrap();
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>The request signature we calculated does not match &amp; so on</Message>\
                    <StringToSign>AWS4-HMAC-SHA256…</StringToSign></Error>";
        let e = StoreError::from_response("PUT", &url, StatusCode::FORBIDDEN, body);
        let shown = e.to_string();
        assert_eq!(
            shown,
            "store refused PUT http://127.0.0.1:9000/bucket/u/1/photo/abc.jpg: SignatureDoesNotMatch: \
             The request signature we calculated does not match & so on (HTTP 403)"
        );
        assert!(!shown.contains("X-Amz"));
        let e = StoreError::from_response("PUT", &url, StatusCode::PRECONDITION_FAILED, "");
        assert!(e.to_string().ends_with(": Precondition Failed (HTTP 412)"));
    }

    #[test]
    fn redaction_keeps_scheme_host_port_path_only() {
        assert_eq!(
            redact_url("https://user:pw@s3.example.com/b/k%20x.jpg?X-Amz-Signature=abc#frag"),
            "https://s3.example.com/b/k%20x.jpg"
        );
        assert_eq!(
            redact_url("http://localhost:8080/v1/uploads"),
            "http://localhost:8080/v1/uploads"
        );
        assert_eq!(redact_url("not a url?X-Amz-Signature=abc"), "<invalid url>");
    }
}
