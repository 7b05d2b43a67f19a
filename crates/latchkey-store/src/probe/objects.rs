//! Probes on single objects, each sent the way a grant holder would send it:
//! presigned PUTs (`put` mode), a POST form (`post`), a header-signed PUT
//! (`headers`). Each pairs a request that must succeed with the ones that
//! must not, and checks that a refused object really is absent.

use latchkey_sigv4::PostPolicy;
use time::{Duration, OffsetDateTime};

use super::Ctx;
use super::http::{
    Answer, describe, head_size, presigned_put, refused_and_absent, send, sha256_b64, sha256_hex,
};
use super::report::{
    CHECKSUM, CLOCK_SKEW, EXPIRY, IF_NONE_MATCH, POST_OBJECT, ProbeRow, SIGNED_PUT,
};

/// Presigned URLs in the probes live this long; long enough for a slow store.
const EXPIRES: u64 = 300;

/// Folds the `Err` of a probe (it could not tell) into an error row.
fn row(name: &str, res: Result<ProbeRow, String>) -> ProbeRow {
    res.unwrap_or_else(|e| ProbeRow::error(name, e))
}

/// How a request that should have been refused fared.
fn refusal(answer: &Answer, refused: bool) -> String {
    if refused {
        answer.summary()
    } else if answer.ok() {
        format!("{} (accepted)", answer.summary())
    } else {
        format!("{} but the object was written", answer.summary())
    }
}

/// `put` grants sign `content-type` and `content-length`; the store must
/// refuse anything else.
pub(crate) async fn signed_put(ctx: &Ctx<'_>) -> ProbeRow {
    row(SIGNED_PUT, try_signed_put(ctx).await)
}

async fn try_signed_put(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let now = OffsetDateTime::now_utc();
    let body = b"0123456789".to_vec();
    let signed = [("content-type", "image/png"), ("content-length", "10")];
    let right = [("content-type", "image/png")];

    let ok = presigned_put(
        ctx,
        &ctx.key("put/ok"),
        &signed,
        &right,
        body.clone(),
        now,
        EXPIRES,
    )
    .await?;
    if !ok.ok() {
        return Err(format!("a correctly signed PUT got {}", ok.summary()));
    }
    let key = ctx.key("put/type");
    let wrong = [("content-type", "text/plain")];
    let other_type = presigned_put(ctx, &key, &signed, &wrong, body.clone(), now, EXPIRES).await?;
    let type_refused = refused_and_absent(ctx, &key, &other_type).await?;

    let key = ctx.key("put/length");
    let mut longer = body;
    longer.push(b'!');
    let one_more = presigned_put(ctx, &key, &signed, &right, longer, now, EXPIRES).await?;
    let length_refused = refused_and_absent(ctx, &key, &one_more).await?;

    Ok(ProbeRow::new(
        SIGNED_PUT,
        type_refused && length_refused,
        format!(
            "{} as signed; other type {}; one byte more {}",
            ok.summary(),
            refusal(&other_type, type_refused),
            refusal(&one_more, length_refused)
        ),
    ))
}

/// A signed `x-amz-checksum-sha256` must be checked against the body.
pub(crate) async fn checksum(ctx: &Ctx<'_>) -> ProbeRow {
    row(CHECKSUM, try_checksum(ctx).await)
}

async fn try_checksum(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let now = OffsetDateTime::now_utc();
    let good = b"latchkey checksum probe: body A".to_vec();
    let bad = b"latchkey checksum probe: body B".to_vec();
    let sum = sha256_b64(&good);
    let len = good.len().to_string();
    let signed = [
        ("content-type", "application/octet-stream"),
        ("content-length", len.as_str()),
        ("x-amz-checksum-sha256", sum.as_str()),
    ];
    let sent = [
        ("content-type", "application/octet-stream"),
        ("x-amz-checksum-sha256", sum.as_str()),
    ];
    let ok = presigned_put(
        ctx,
        &ctx.key("checksum/ok"),
        &signed,
        &sent,
        good,
        now,
        EXPIRES,
    )
    .await?;
    if !ok.ok() {
        return Err(format!(
            "a PUT with the right checksum got {}",
            ok.summary()
        ));
    }
    let key = ctx.key("checksum/bad");
    let other = presigned_put(ctx, &key, &signed, &sent, bad, now, EXPIRES).await?;
    let refused = refused_and_absent(ctx, &key, &other).await?;
    Ok(ProbeRow::new(
        CHECKSUM,
        refused,
        format!(
            "{} for the matching body; other body {}",
            ok.summary(),
            refusal(&other, refused)
        ),
    ))
}

/// `If-None-Match: *` signed into a grant must stop a replay from
/// overwriting the object the first use wrote.
pub(crate) async fn if_none_match(ctx: &Ctx<'_>) -> ProbeRow {
    row(IF_NONE_MATCH, try_if_none_match(ctx).await)
}

async fn try_if_none_match(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let now = OffsetDateTime::now_utc();
    let key = ctx.key("if-none-match");
    let signed = [
        ("content-type", "text/plain"),
        ("content-length", "8"),
        ("if-none-match", "*"),
    ];
    let sent = [("content-type", "text/plain"), ("if-none-match", "*")];
    let first = presigned_put(
        ctx,
        &key,
        &signed,
        &sent,
        b"first!!!".to_vec(),
        now,
        EXPIRES,
    )
    .await?;
    if first.status == 501 {
        // AWS itself answered this way before it supported conditional writes.
        return Ok(ProbeRow::new(
            IF_NONE_MATCH,
            false,
            format!("{} on a new key", first.summary()),
        ));
    }
    if !first.ok() {
        return Err(format!("the first PUT (new key) got {}", first.summary()));
    }
    let second = presigned_put(
        ctx,
        &key,
        &signed,
        &sent,
        b"second!!".to_vec(),
        now,
        EXPIRES,
    )
    .await?;
    let detail = format!(
        "{} on a new key; {} on the second PUT",
        first.summary(),
        second.summary()
    );
    match second.status {
        412 => Ok(ProbeRow::new(IF_NONE_MATCH, true, detail)),
        _ if second.ok() => Ok(ProbeRow::new(
            IF_NONE_MATCH,
            false,
            format!("{detail}: ignored, the object was overwritten"),
        )),
        _ => Err(format!("{detail}; expected 412")),
    }
}

/// A browser POST form with a SigV4 policy: accepted when it keeps to the
/// policy, refused above `content-length-range`.
pub(crate) async fn post_object(ctx: &Ctx<'_>) -> ProbeRow {
    row(POST_OBJECT, try_post_object(ctx).await)
}

async fn try_post_object(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let ok_key = ctx.key("post/ok");
    let ok = post_form(ctx, &ok_key, b"0123456789".to_vec()).await?;
    if !ok.ok() {
        // R2 and other stores without POST object answer 4xx/501 here.
        return Ok(ProbeRow::new(
            POST_OBJECT,
            false,
            format!("{} for a form within its policy", ok.summary()),
        ));
    }
    match head_size(ctx, &ok_key).await? {
        Some(10) => {}
        other => {
            return Err(format!(
                "{} but the object's size is {other:?}",
                ok.summary()
            ));
        }
    }
    let big_key = ctx.key("post/big");
    let big = post_form(ctx, &big_key, vec![b'x'; 17]).await?;
    let refused = refused_and_absent(ctx, &big_key, &big).await?;
    Ok(ProbeRow::new(
        POST_OBJECT,
        refused,
        format!(
            "{} within the policy; over content-length-range {}",
            ok.summary(),
            refusal(&big, refused)
        ),
    ))
}

/// Posts `body` as the `file` field (last, as S3 requires) of a form
/// allowing 1..=16 bytes of `text/plain` at `key`.
async fn post_form(ctx: &Ctx<'_>, key: &str, body: Vec<u8>) -> Result<Answer, String> {
    let now = OffsetDateTime::now_utc();
    let policy = PostPolicy {
        bucket: ctx.bucket().to_owned(),
        key: key.to_owned(),
        expiration: now + Duration::minutes(5),
        content_type: Some("text/plain".to_owned()),
        content_length_range: Some((1, 16)),
        extra_fields: Vec::new(),
    };
    let fields = ctx
        .signer
        .post_policy(&policy, now)
        .map_err(|e| e.to_string())?;
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields.fields {
        form = form.text(name, value);
    }
    let file = reqwest::multipart::Part::bytes(body)
        .file_name("probe.txt")
        .mime_str("text/plain")
        .map_err(describe)?;
    form = form.part("file", file);
    send(ctx.http.post(ctx.endpoint.bucket_url()).multipart(form)).await
}

/// A `headers` grant signed 20 minutes ago. AWS refuses anything beyond 15
/// minutes; a store that accepts it lets a captured request be replayed for
/// as long as it likes.
pub(crate) async fn clock_skew(ctx: &Ctx<'_>) -> ProbeRow {
    row(CLOCK_SKEW, try_clock_skew(ctx).await)
}

async fn try_clock_skew(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let now = OffsetDateTime::now_utc();
    let fresh = header_signed_put(ctx, &ctx.key("skew/now"), now).await?;
    if !fresh.ok() {
        return Err(format!("a header-signed PUT got {}", fresh.summary()));
    }
    let key = ctx.key("skew/old");
    let old = header_signed_put(ctx, &key, now - Duration::minutes(20)).await?;
    let refused = refused_and_absent(ctx, &key, &old).await?;
    Ok(ProbeRow::new(
        CLOCK_SKEW,
        refused,
        format!("x-amz-date 20 minutes old {}", refusal(&old, refused)),
    ))
}

async fn header_signed_put(
    ctx: &Ctx<'_>,
    key: &str,
    signed_at: OffsetDateTime,
) -> Result<Answer, String> {
    let body = b"skew".to_vec();
    let url = ctx.endpoint.object_url(key);
    let auth = ctx
        .signer
        .sign_headers(
            "PUT",
            &url,
            &[("content-type", "text/plain")],
            &sha256_hex(&body),
            signed_at,
        )
        .map_err(|e| e.to_string())?;
    let mut req = ctx
        .http
        .put(url)
        .header("content-type", "text/plain")
        .body(body);
    for (name, value) in &auth {
        req = req.header(name.as_str(), value.as_str());
    }
    send(req).await
}

/// A presigned URL one minute past its expiry must be refused.
pub(crate) async fn expiry(ctx: &Ctx<'_>) -> ProbeRow {
    row(EXPIRY, try_expiry(ctx).await)
}

async fn try_expiry(ctx: &Ctx<'_>) -> Result<ProbeRow, String> {
    let key = ctx.key("expired");
    let signed_at = OffsetDateTime::now_utc() - Duration::minutes(2);
    let signed = [("content-type", "text/plain")];
    let answer =
        presigned_put(ctx, &key, &signed, &signed, b"late".to_vec(), signed_at, 60).await?;
    let refused = refused_and_absent(ctx, &key, &answer).await?;
    Ok(ProbeRow::new(
        EXPIRY,
        refused,
        format!("a URL expired a minute ago {}", refusal(&answer, refused)),
    ))
}
