//! What every request must satisfy before any operation runs.
//!
//! s3s verifies signatures (header SigV4, presigned query, POST policy); this
//! adds the store's own rules on top:
//! - anonymous requests are refused (s3s's default, restated here because
//!   installing an `S3Access` replaces it);
//! - ACL headers are refused. The store has no ACLs, and a presigned PUT
//!   carrying an unsigned `x-amz-acl: public-read` must not look like it
//!   succeeded. `x-amz-acl: private` is what every object already is, so it is
//!   accepted; some clients send it by default.

use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};
use s3s::s3_error;

pub(crate) struct Access {
    /// Checks requests signed with temporary (write-only) keys.
    pub(crate) temporary: std::sync::Arc<latchkey_sigv4::temporary::TokenKey>,
    pub(crate) bucket: String,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        if cx
            .credentials()
            .is_some_and(|c| crate::temporary::is_temporary(&c.access_key))
        {
            crate::temporary::check(&self.temporary, &self.bucket, cx)?;
        }
        for (name, value) in cx.headers() {
            let name = name.as_str();
            let acl = name == "x-amz-acl" && value.as_bytes() != b"private";
            if acl || name.starts_with("x-amz-grant-") {
                return Err(s3_error!(
                    NotImplemented,
                    "This store does not support ACLs; remove the {name} header."
                ));
            }
        }
        Ok(())
    }

    async fn post_object(
        &self,
        req: &mut s3s::S3Request<s3s::dto::PostObjectInput>,
    ) -> S3Result<()> {
        crate::post::refuse_uncovered_fields(&req.input)
    }
}

/// The same rule for ACLs that arrive as operation input rather than headers
/// (POST object form fields become `PutObject` input).
pub(crate) fn refuse_acl(
    acl: Option<&s3s::dto::ObjectCannedACL>,
    grants: [Option<&String>; 4],
) -> S3Result<()> {
    let acl = acl.is_some_and(|a| a.as_str() != s3s::dto::ObjectCannedACL::PRIVATE);
    if acl || grants.iter().any(Option::is_some) {
        return Err(s3_error!(
            NotImplemented,
            "This store does not support ACLs."
        ));
    }
    Ok(())
}
