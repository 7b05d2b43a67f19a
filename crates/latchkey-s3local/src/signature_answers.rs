//! s3s 0.14 answers some wrongly signed requests with 501 `NotImplemented`
//! (an `X-Amz-Algorithm` other than AWS4-HMAC-SHA256, a credential scope
//! for another service, a streaming payload on a presigned URL, SigV4a).
//! These are the client's mistakes, and S3 answers them with 400: a 5xx
//! would tell clients to retry and monitoring that the store is broken.
//! Found by the presigned-URL property test (tests/s3/props.rs).

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

/// Messages s3s gives its 501 answers to signature problems.
const SIGNATURE_501: [&[u8]; 4] = [
    b"other than AWS4-HMAC-SHA256 is not implemented",
    // The XML body escapes the quotes around 's3' and 'sts' (`&apos;`);
    // the header-signature property test found this one never matched.
    b"in credential scope; expected ",
    b"streaming payload for presigned URLs is not implemented",
    b"AWS4-ECDSA-P256-SHA256 signing method is not implemented",
];

const NOT_IMPLEMENTED: &[u8] = b"<Code>NotImplemented</Code>";

/// True when the request carries its signature in the query string.
pub(crate) fn is_presigned(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|p| {
            p.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("X-Amz-Algorithm"))
        })
    })
}

/// 501 for a signature problem → 400 `AuthorizationQueryParametersError`
/// (presigned) or `AuthorizationHeaderMalformed`, as S3 answers.
pub(crate) fn signature_501_as_400(
    mut res: s3s::HttpResponse,
    presigned: bool,
) -> s3s::HttpResponse {
    if res.status() != StatusCode::NOT_IMPLEMENTED {
        return res;
    }
    let Some(body) = res.body().bytes() else {
        return res;
    };
    let Some(at) = find(&body, NOT_IMPLEMENTED) else {
        return res;
    };
    if !SIGNATURE_501.iter().any(|m| find(&body, m).is_some()) {
        return res;
    }
    let code: &[u8] = if presigned {
        b"<Code>AuthorizationQueryParametersError</Code>"
    } else {
        b"<Code>AuthorizationHeaderMalformed</Code>"
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(code);
    out.extend_from_slice(&body[at + NOT_IMPLEMENTED.len()..]);
    *res.status_mut() = StatusCode::BAD_REQUEST;
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
    fn unsupported_algorithm_is_a_client_error() {
        let res = signature_501_as_400(
            answer(
                StatusCode::NOT_IMPLEMENTED,
                "<Error><Code>NotImplemented</Code><Message>X-Amz-Algorithm other than AWS4-HMAC-SHA256 is not implemented</Message></Error>",
            ),
            true,
        );
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = res.body().bytes().unwrap();
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains("<Code>AuthorizationQueryParametersError</Code>")
        );
    }

    #[test]
    fn another_service_in_the_scope_is_a_client_error() {
        // As s3s writes it: quotes escaped.
        let res = signature_501_as_400(
            answer(
                StatusCode::NOT_IMPLEMENTED,
                "<Error><Code>NotImplemented</Code><Message>unknown service &apos;iam&apos; in credential scope; expected &apos;s3&apos; or &apos;sts&apos;</Message></Error>",
            ),
            false,
        );
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = res.body().bytes().unwrap();
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains("<Code>AuthorizationHeaderMalformed</Code>")
        );
    }

    #[test]
    fn other_501s_are_left_alone() {
        let res = signature_501_as_400(
            answer(
                StatusCode::NOT_IMPLEMENTED,
                "<Error><Code>NotImplemented</Code><Message>Unknown operation</Message></Error>",
            ),
            true,
        );
        assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn presigned_is_read_from_the_query() {
        assert!(is_presigned(&"/b/k?X-Amz-Algorithm=x&a=b".parse().unwrap()));
        assert!(is_presigned(&"/b/k?a=b&x-amz-algorithm=".parse().unwrap()));
        assert!(!is_presigned(&"/b/k?uploads".parse().unwrap()));
    }
}
