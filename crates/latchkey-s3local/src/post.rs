//! Browser POST uploads (`PostObject`): what this store adds to s3s so a
//! policy is enforced the way S3 enforces it.
//!
//! s3s 0.14 already does most of it before our backend sees the request:
//! the SigV4 signature over the policy (403 `SignatureDoesNotMatch`), the
//! policy's expiration (403), every `eq`/`starts-with` condition, that every
//! form field is covered by a condition (403), and `content-length-range`
//! (400 `EntityTooLarge`/`EntityTooSmall`, the file read only up to the
//! maximum). Then `PostObject` becomes our `put_object`, which verifies
//! `x-amz-checksum-sha256` like it does for a PUT. Two gaps remain:
//!
//! - A failed condition (another key, another content type) answers 400
//!   `InvalidPolicyDocument`; S3 answers 403 `AccessDenied` ("Invalid
//!   according to Policy: Policy Condition failed"), and clients branch on
//!   that. [`PostAnswers`] rewrites that one answer.
//! - s3s lets `x-amz-server-side-encryption*` form fields through without a
//!   policy condition (a MinIO allowance). This store has no server-side
//!   encryption settings, and S3 requires every field to be in the policy,
//!   so [`refuse_uncovered_fields`] refuses them.
//! - A header arrives as a valid header value, a form field as any bytes.
//!   Fields that become response headers (`Content-Type`, `x-amz-meta-*`,
//!   the redirect's `Location`…) must be valid ones, or the object would be
//!   stored and then fail every GET and HEAD; [`refuse_unservable_fields`]
//!   refuses them with 400 `InvalidArgument`.
//!
//! Note that s3s holds the whole file in memory before `put_object` runs
//! (bounded by the policy's `content-length-range`).

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};
use s3s::dto::PostObjectInput;
use s3s::{S3Result, s3_error};

/// Refuses encryption fields s3s exempts from the policy (see the module
/// header): no policy latchkey signs covers them.
pub(crate) fn refuse_uncovered_fields(input: &PostObjectInput) -> S3Result<()> {
    let sse = input.server_side_encryption.is_some()
        || input.sse_customer_algorithm.is_some()
        || input.sse_customer_key.is_some()
        || input.sse_customer_key_md5.is_some()
        || input.ssekms_key_id.is_some()
        || input.ssekms_encryption_context.is_some()
        || input.bucket_key_enabled.is_some();
    if sse {
        return Err(s3_error!(
            AccessDenied,
            "Invalid according to Policy: Extra input fields: x-amz-server-side-encryption*"
        ));
    }
    Ok(())
}

/// Refuses form fields the store would later send back as headers but that
/// are not valid header values (a NUL, CR or LF, DEL…), see the module
/// header. The fuzz target `post_policy` found the first one.
pub(crate) fn refuse_unservable_fields(input: &PostObjectInput) -> S3Result<()> {
    let fields = [
        ("Content-Type", input.content_type.as_deref()),
        ("Content-Disposition", input.content_disposition.as_deref()),
        ("Content-Encoding", input.content_encoding.as_deref()),
        ("Content-Language", input.content_language.as_deref()),
        ("Cache-Control", input.cache_control.as_deref()),
        (
            "x-amz-website-redirect-location",
            input.website_redirect_location.as_deref(),
        ),
        (
            "success_action_redirect",
            input.success_action_redirect.as_deref(),
        ),
    ];
    let not_a_value = |v: &str| HeaderValue::from_str(v).is_err();
    if let Some((name, _)) = fields.into_iter().find(|(_, v)| v.is_some_and(not_a_value)) {
        return Err(s3_error!(
            InvalidArgument,
            "The {name} form field is not a valid HTTP header value."
        ));
    }
    // A metadata name is a header name too; it may be what is wrong, so
    // the answer does not echo it.
    let bad_metadata = input.metadata.iter().flatten().any(|(k, v)| {
        not_a_value(v)
            || http::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()).is_err()
    });
    if bad_metadata {
        return Err(s3_error!(
            InvalidArgument,
            "An x-amz-meta-* form field is not a valid HTTP header."
        ));
    }
    Ok(())
}

/// Wraps the s3s service to answer failed POST policy conditions as S3 does.
#[derive(Clone, Debug)]
pub(crate) struct PostAnswers<S>(pub(crate) S);

impl<S, B> tower::Service<http::Request<B>> for PostAnswers<S>
where
    S: tower::Service<http::Request<B>, Response = s3s::HttpResponse>,
    S::Future: Send + 'static,
{
    type Response = s3s::HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.len() >= 19 && v[..19].eq_ignore_ascii_case("multipart/form-data")
                });
        let presigned = crate::signature_answers::is_presigned(req.uri());
        let fut = self.0.call(req);
        Box::pin(async move {
            let res = crate::signature_answers::signature_501_as_400(fut.await?, presigned);
            Ok(if form {
                policy_failure_as_403(res)
            } else {
                res
            })
        })
    }
}

const CONDITION_FAILED: &[u8] = b"<Code>InvalidPolicyDocument</Code><Message>Policy condition";

/// 400 `InvalidPolicyDocument` for a failed condition → 403 `AccessDenied`.
/// A policy that cannot be parsed stays 400 `InvalidPolicyDocument`, as on S3.
fn policy_failure_as_403(mut res: s3s::HttpResponse) -> s3s::HttpResponse {
    if res.status() != StatusCode::BAD_REQUEST {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    let Some(at) = find(&body, CONDITION_FAILED) else {
        return res;
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(
        b"<Code>AccessDenied</Code><Message>Invalid according to Policy: Policy condition",
    );
    out.extend_from_slice(&body[at + CONDITION_FAILED.len()..]);
    *res.status_mut() = StatusCode::FORBIDDEN;
    if res.headers().contains_key(header::CONTENT_LENGTH) {
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    }
    *res.body_mut() = s3s::Body::from(Bytes::from(out));
    res
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: StatusCode, body: &str) -> s3s::HttpResponse {
        let mut res = http::Response::new(s3s::Body::from(body.to_owned()));
        *res.status_mut() = status;
        res
    }

    #[test]
    fn failed_conditions_become_access_denied() {
        let res = policy_failure_as_403(answer(
            StatusCode::BAD_REQUEST,
            "<Error><Code>InvalidPolicyDocument</Code><Message>Policy condition 'eq' for field 'key' failed</Message></Error>",
        ));
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let body = res.body().bytes().unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        assert!(body.contains("for field 'key' failed"), "{body}");
    }

    #[test]
    fn other_answers_are_untouched() {
        for (status, body) in [
            (
                StatusCode::BAD_REQUEST,
                "<Error><Code>InvalidPolicyDocument</Code><Message>failed to parse POST policy</Message></Error>",
            ),
            (
                StatusCode::BAD_REQUEST,
                "<Error><Code>EntityTooLarge</Code><Message>Policy condition</Message></Error>",
            ),
            (StatusCode::NO_CONTENT, ""),
        ] {
            let res = policy_failure_as_403(answer(status, body));
            assert_eq!(res.status(), status);
            assert_eq!(res.body().bytes().unwrap(), body.as_bytes());
        }
    }
}
