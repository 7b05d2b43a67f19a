//! The `credentials` mode on AWS, MinIO and Ceph: STS `AssumeRole` with a
//! session policy that narrows the role to one prefix, then a check that the
//! credentials it returns can write inside that prefix and nowhere else.
//!
//! Only tried when the operator configured `sts_role_arn`. The embedded store
//! mints credentials itself, so "skipped" there says nothing about the mode.

use latchkey_sigv4::{Credentials, Signer, uri_encode};
use serde_json::json;
use time::OffsetDateTime;

use super::http::{Answer, refused_and_absent, send, sha256_hex, xml_text};
use super::report::{ProbeRow, STS};
use super::{Ctx, ProbeTarget};

pub(crate) async fn assume_role(ctx: &Ctx<'_>) -> ProbeRow {
    let Some(role) = ctx.target.sts_role_arn.as_deref() else {
        return ProbeRow::skipped(STS, "not configured (no sts_role_arn)");
    };
    try_assume_role(ctx, role)
        .await
        .unwrap_or_else(|e| ProbeRow::error(STS, e))
}

/// Where `AssumeRole` goes when the operator did not say.
pub(crate) fn sts_url(target: &ProbeTarget) -> String {
    if let Some(url) = &target.sts_endpoint {
        return with_root_path(url);
    }
    if target.endpoint.contains(".amazonaws.com") {
        format!("https://sts.{}.amazonaws.com/", target.region)
    } else {
        with_root_path(&target.endpoint)
    }
}

fn with_root_path(url: &str) -> String {
    format!("{}/", url.trim_end_matches('/'))
}

async fn try_assume_role(ctx: &Ctx<'_>, role: &str) -> Result<ProbeRow, String> {
    let allowed = format!("{}sts/", ctx.prefix);
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [format!("arn:aws:s3:::{}/{allowed}*", ctx.bucket())],
        }],
    })
    .to_string();
    let answer = call_assume_role(ctx, role, &policy).await?;
    if !answer.ok() {
        return Ok(refused(&answer));
    }
    let field = |tag: &str| {
        xml_text(&answer.body, tag).ok_or_else(|| format!("no {tag} in the AssumeRole answer"))
    };
    let creds = Credentials::new(field("AccessKeyId")?, field("SecretAccessKey")?)
        .with_session_token(field("SessionToken")?);
    let temp = Signer::new(creds, &ctx.target.region);

    let inside = put_with(ctx, &temp, &format!("{allowed}inside")).await?;
    if !inside.ok() {
        // The session policy only narrows the role: the role itself must
        // allow the probe's prefix (docs/stores.md, AWS).
        return Err(format!(
            "AssumeRole worked, but a PUT inside the session policy's prefix got {} \
             (does the role allow .latchkey-probe/*?)",
            inside.summary()
        ));
    }
    let outside_key = ctx.key("sts-outside");
    let outside = put_with(ctx, &temp, &outside_key).await?;
    let scoped = refused_and_absent(ctx, &outside_key, &outside).await?;
    let detail = format!(
        "AssumeRole {}; PUT inside the session prefix {}; outside {}",
        answer.status,
        inside.summary(),
        outside.summary()
    );
    if scoped {
        Ok(ProbeRow::new(STS, true, detail))
    } else {
        // Credentials that ignore their session policy would let a user
        // write over everyone's uploads: not a usable `credentials` mode.
        Ok(ProbeRow::new(
            STS,
            false,
            format!("{detail}: the session policy is not enforced"),
        ))
    }
}

/// STS's query API over a SigV4-signed form POST.
async fn call_assume_role(ctx: &Ctx<'_>, role: &str, policy: &str) -> Result<Answer, String> {
    let params = [
        ("Action", "AssumeRole"),
        ("DurationSeconds", "900"),
        ("Policy", policy),
        ("RoleArn", role),
        ("RoleSessionName", "latchkey-store-check"),
        ("Version", "2011-06-15"),
    ];
    let body = params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let url = sts_url(ctx.target);
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let creds = Credentials {
        access_key_id: ctx.target.access_key_id.clone(),
        secret_access_key: ctx.target.secret_access_key.clone(),
        session_token: None,
    };
    let signer = Signer::with_service(creds, &ctx.target.region, "sts");
    let auth = signer
        .sign_headers(
            "POST",
            &url,
            &[("content-type", content_type)],
            &sha256_hex(body.as_bytes()),
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| e.to_string())?;
    let mut req = ctx
        .http
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (name, value) in &auth {
        req = req.header(name.as_str(), value.as_str());
    }
    send(req).await
}

/// A store without STS answers its generic "no such operation" (S3 stores
/// see a POST to `/`), or, like Garage, refuses a signature scoped to the
/// `sts` service (`AuthorizationHeaderMalformed`) before it looks at the
/// action. One with STS but a role we may not assume answers
/// `AccessDenied`, which is a setup problem to report, not a missing feature.
fn refused(answer: &Answer) -> ProbeRow {
    let code = answer.code.as_deref().unwrap_or("");
    let missing = matches!(
        code,
        "NotImplemented"
            | "InvalidAction"
            | "MethodNotAllowed"
            | "InvalidRequest"
            | "AuthorizationHeaderMalformed"
    ) || matches!(answer.status, 404 | 405 | 501);
    if missing {
        ProbeRow::new(STS, false, format!("AssumeRole {}", answer.summary()))
    } else {
        ProbeRow::error(STS, format!("AssumeRole {}", answer.summary()))
    }
}

async fn put_with(ctx: &Ctx<'_>, signer: &Signer, key: &str) -> Result<Answer, String> {
    let url = signer
        .presign(
            "PUT",
            &ctx.endpoint.object_url(key),
            &[("content-type", "text/plain")],
            &[],
            300,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| e.to_string())?;
    let req = ctx
        .http
        .put(url)
        .header("content-type", "text/plain")
        .body(b"sts".to_vec());
    send(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str, sts: Option<&str>) -> ProbeTarget {
        ProbeTarget {
            endpoint: endpoint.into(),
            region: "eu-west-1".into(),
            bucket: "b".into(),
            path_style: false,
            access_key_id: "AK".into(),
            secret_access_key: "SK".to_string().into(),
            sts_endpoint: sts.map(str::to_owned),
            sts_role_arn: Some("arn:aws:iam::1:role/r".into()),
        }
    }

    #[test]
    fn sts_endpoint_defaults() {
        let aws = target("https://s3.eu-west-1.amazonaws.com", None);
        assert_eq!(sts_url(&aws), "https://sts.eu-west-1.amazonaws.com/");
        let minio = target("http://127.0.0.1:9000", None);
        assert_eq!(sts_url(&minio), "http://127.0.0.1:9000/");
        let given = target("http://s3", Some("https://sts.example.com/"));
        assert_eq!(sts_url(&given), "https://sts.example.com/");
    }
}
