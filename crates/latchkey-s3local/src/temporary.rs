//! Scoped temporary credentials (the `credentials` grant mode): the store
//! accepts its root key and the write-only keys the broker minted from the
//! same root secret (format and checks: `latchkey_sigv4::temporary`).
//!
//! Stateless on purpose: nothing is stored per credential, so a broker and a
//! store that share the root secret agree without talking, and a restart
//! forgets nothing. The cost is that a credential cannot be revoked before it
//! expires except by rotating the root secret — the same trade STS makes.

use std::sync::Arc;

use http::StatusCode;
use latchkey_domain::Secret;
use latchkey_sigv4::temporary::{
    ACCESS_KEY_PREFIX, TokenError, TokenKey, WRITE_OPERATIONS, key_in_prefix,
};
use s3s::access::S3AccessContext;
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use time::OffsetDateTime;

/// The root key pair, plus every well-shaped temporary key id (whose secret
/// is recomputed; [`check`] then decides whether its token is genuine).
pub(crate) struct Auth {
    root_id: String,
    root_secret: Secret,
    key: Arc<TokenKey>,
}

impl Auth {
    pub(crate) fn new(root_id: String, root_secret: Secret, key: Arc<TokenKey>) -> Self {
        Self {
            root_id,
            root_secret,
            key,
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.root_id {
            return Ok(SecretKey::from(self.root_secret.expose()));
        }
        match self.key.secret_for(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.expose())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

pub(crate) fn is_temporary(access_key: &str) -> bool {
    access_key.starts_with(ACCESS_KEY_PREFIX)
}

/// The session token of a request: the `x-amz-security-token` header, or the
/// `X-Amz-Security-Token` query parameter of a presigned URL.
fn session_token(cx: &S3AccessContext<'_>) -> Option<String> {
    if let Some(v) = cx.headers().get("x-amz-security-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    let query = cx.uri().query()?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.eq_ignore_ascii_case("X-Amz-Security-Token").then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn denied(msg: &'static str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, msg)
}

/// What a request signed with a temporary key may do: only the operations in
/// [`WRITE_OPERATIONS`], only on an object of this store's bucket whose key
/// lies under the token's prefix, and only before the token expires.
pub(crate) fn check(key: &TokenKey, bucket: &str, cx: &S3AccessContext<'_>) -> S3Result<()> {
    let Some(creds) = cx.credentials() else {
        return Err(denied("Signature is required"));
    };
    let Some(token) = session_token(cx) else {
        return Err(denied("Temporary credentials need their security token."));
    };
    let scope = match key.verify(&creds.access_key, &token, OffsetDateTime::now_utc()) {
        Ok(scope) => scope,
        Err(TokenError::Expired) => {
            // AWS answers 400; 403 says "not allowed (any more)", which is
            // what a client should do with it.
            let mut err =
                S3Error::with_message(S3ErrorCode::ExpiredToken, "The provided token has expired.");
            err.set_status_code(StatusCode::FORBIDDEN);
            return Err(err);
        }
        Err(TokenError::Invalid) => {
            return Err(denied(
                "The security token included in the request is invalid.",
            ));
        }
    };
    if !WRITE_OPERATIONS.contains(&cx.s3_op().name()) {
        return Err(denied("These credentials may only upload objects."));
    }
    match cx.s3_path() {
        S3Path::Object { bucket: b, key: k }
            if &**b == bucket && key_in_prefix(k, &scope.prefix) =>
        {
            Ok(())
        }
        _ => Err(denied(
            "These credentials may only write under their own prefix.",
        )),
    }
}
