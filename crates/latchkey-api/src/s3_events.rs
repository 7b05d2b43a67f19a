//! Parsing S3 event notifications as AWS S3 (directly, or wrapped in an SNS
//! HTTP notification) and MinIO (webhook target) send them. Pure: no IO.

use serde::Deserialize;

/// What one notification asks of the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Notification {
    /// SNS wants the endpoint to confirm the subscription by visiting a URL.
    ConfirmSubscription { subscribe_url: String },
    /// Object events, in the order given.
    Events(Vec<ObjectEvent>),
    /// Valid, but nothing for the broker (an S3 `TestEvent`, an SNS
    /// unsubscribe confirmation).
    Nothing,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    /// Decoded: S3 sends keys form-urlencoded (`+` for space).
    pub key: String,
    pub created: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an S3 event notification: {0}")]
pub struct ParseError(pub String);

#[derive(Deserialize)]
struct Records {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
}

#[derive(Deserialize)]
struct Sns {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
}

/// Undoes S3's form-style key encoding.
fn decode_key(raw: &str) -> Result<String, ParseError> {
    let plus_decoded = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ParseError("object key is not UTF-8".into()))
}

fn records(body: &str) -> Result<Notification, ParseError> {
    let parsed: Records = serde_json::from_str(body).map_err(|e| ParseError(e.to_string()))?;
    if parsed.records.is_empty() {
        return match parsed.event.as_deref() {
            Some("s3:TestEvent") => Ok(Notification::Nothing),
            _ => Err(ParseError("no Records".into())),
        };
    }
    let mut out = Vec::with_capacity(parsed.records.len());
    for r in parsed.records {
        // MinIO prefixes names with `s3:`; AWS does not.
        let name = r.event_name.strip_prefix("s3:").unwrap_or(&r.event_name);
        let created = name.starts_with("ObjectCreated:");
        if !created && !name.starts_with("ObjectRemoved:") {
            continue;
        }
        out.push(ObjectEvent {
            bucket: r.s3.bucket.name,
            key: decode_key(&r.s3.object.key)?,
            created,
        });
    }
    Ok(Notification::Events(out))
}

/// Parses a notification body. `sns_type` is the `x-amz-sns-message-type`
/// header, when SNS sent it.
pub fn parse(body: &str, sns_type: Option<&str>) -> Result<Notification, ParseError> {
    if sns_type.is_none() && !body.contains("\"Type\"") {
        return records(body);
    }
    let sns: Sns = match serde_json::from_str(body) {
        Ok(s) => s,
        Err(_) if sns_type.is_none() => return records(body),
        Err(e) => return Err(ParseError(e.to_string())),
    };
    match sns.kind.as_str() {
        "SubscriptionConfirmation" => sns
            .subscribe_url
            .map(|subscribe_url| Notification::ConfirmSubscription { subscribe_url })
            .ok_or_else(|| ParseError("SubscriptionConfirmation without SubscribeURL".into())),
        "Notification" => records(&sns.message),
        "UnsubscribeConfirmation" => Ok(Notification::Nothing),
        other => Err(ParseError(format!("unknown SNS message type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":"photos"},"object":{"key":"u/alice/photo/a+b%C3%A9.jpg","size":5}}},
        {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"photos"},"object":{"key":"u/x.jpg"}}},
        {"eventName":"ObjectRestore:Completed","s3":{"bucket":{"name":"photos"},"object":{"key":"u/y.jpg"}}}]}"#;

    #[test]
    fn aws_records_decode_keys_and_skip_other_events() {
        let Notification::Events(ev) = parse(AWS, None).unwrap() else {
            panic!()
        };
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].key, "u/alice/photo/a bé.jpg");
        assert!(ev[0].created);
        assert!(!ev[1].created);
    }

    #[test]
    fn sns_wrapped_and_confirmation() {
        let wrapped = serde_json::json!({"Type": "Notification", "Message": AWS}).to_string();
        assert!(
            matches!(parse(&wrapped, Some("Notification")).unwrap(), Notification::Events(v) if v.len() == 2)
        );
        let confirm = r#"{"Type":"SubscriptionConfirmation","SubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x"}"#;
        assert!(matches!(
            parse(confirm, Some("SubscriptionConfirmation")).unwrap(),
            Notification::ConfirmSubscription { .. }
        ));
    }

    #[test]
    fn minio_names_and_test_events() {
        let minio = r#"{"EventName":"s3:ObjectCreated:Put","Key":"photos/u/a.jpg","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"photos"},"object":{"key":"u%2Fa.jpg"}}}]}"#;
        let Notification::Events(ev) = parse(minio, None).unwrap() else {
            panic!()
        };
        assert_eq!(ev[0].key, "u/a.jpg");
        assert_eq!(
            parse(r#"{"Event":"s3:TestEvent","Bucket":"photos"}"#, None).unwrap(),
            Notification::Nothing
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"Records":[{"eventName":1}]}"#,
            r#"{"Type":"Weird"}"#,
            "\u{0}",
        ] {
            assert!(parse(bad, None).is_err(), "{bad:?}");
        }
    }
}
