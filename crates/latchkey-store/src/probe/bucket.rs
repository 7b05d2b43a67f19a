//! Bucket configuration the operator sets up once (docs/stores.md): CORS for
//! browsers, a lifecycle rule for abandoned multipart uploads, event
//! notifications for prompt commits. Read only; the probe never changes it.
//!
//! "Not configured" answers (`NoSuchCORSConfiguration`, …) count as supported:
//! the store has the feature, the bucket just does not use it yet.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::Ctx;
use super::http::{sdk_code, sdk_error, sdk_status};
use super::report::{CORS, LIFECYCLE, NOTIFICATIONS, ProbeRow};

pub(crate) async fn cors(ctx: &Ctx<'_>) -> ProbeRow {
    let res = ctx.sdk.get_bucket_cors().bucket(ctx.bucket()).send().await;
    match res {
        Ok(out) => ProbeRow::new(
            CORS,
            true,
            format!("readable: {} rule(s)", out.cors_rules().len()),
        ),
        Err(e) => from_error(CORS, &e, Some("NoSuchCORSConfiguration")),
    }
}

pub(crate) async fn lifecycle(ctx: &Ctx<'_>) -> ProbeRow {
    let res = ctx
        .sdk
        .get_bucket_lifecycle_configuration()
        .bucket(ctx.bucket())
        .send()
        .await;
    match res {
        Ok(out) => {
            let aborts = out.rules().iter().find_map(|r| {
                r.abort_incomplete_multipart_upload()
                    .and_then(|a| a.days_after_initiation())
            });
            let note = match aborts {
                Some(days) => format!("aborts incomplete multipart uploads after {days} day(s)"),
                None => "none aborts incomplete multipart uploads".to_owned(),
            };
            ProbeRow::new(
                LIFECYCLE,
                true,
                format!("readable: {} rule(s), {note}", out.rules().len()),
            )
        }
        Err(e) => from_error(LIFECYCLE, &e, Some("NoSuchLifecycleConfiguration")),
    }
}

pub(crate) async fn notifications(ctx: &Ctx<'_>) -> ProbeRow {
    let res = ctx
        .sdk
        .get_bucket_notification_configuration()
        .bucket(ctx.bucket())
        .send()
        .await;
    match res {
        Ok(out) => {
            let n = out.topic_configurations().len()
                + out.queue_configurations().len()
                + out.lambda_function_configurations().len();
            let bridge = if out.event_bridge_configuration().is_some() {
                ", EventBridge on"
            } else {
                ""
            };
            ProbeRow::new(
                NOTIFICATIONS,
                true,
                format!("readable: {n} destination(s){bridge}"),
            )
        }
        // There is no "not configured" error here: an empty configuration
        // is a 200.
        Err(e) => from_error(NOTIFICATIONS, &e, None),
    }
}

/// `missing_code` is the store's way of saying "supported, none set".
fn from_error<E: ProvideErrorMetadata>(
    name: &str,
    err: &SdkError<E, HttpResponse>,
    missing_code: Option<&str>,
) -> ProbeRow {
    let said = sdk_error(err);
    let code = sdk_code(err);
    if code.is_some() && code == missing_code {
        return ProbeRow::new(name, true, format!("readable: {said} (none set)"));
    }
    if sdk_status(err) == Some(501) || code == Some("NotImplemented") {
        return ProbeRow::new(name, false, said);
    }
    if code == Some("AccessDenied") {
        return ProbeRow::error(
            name,
            format!("{said}: the key may not read this configuration"),
        );
    }
    ProbeRow::error(name, said)
}
