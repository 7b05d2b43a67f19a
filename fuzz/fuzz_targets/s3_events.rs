//! S3/MinIO event notifications and SNS envelopes arrive from the network
//! (`POST /v1/events/s3`): any body is parsed or refused, never a panic,
//! and a records body means the same wrapped in an SNS `Notification` as
//! posted bare. Input: one byte choosing the `x-amz-sns-message-type`
//! header (0 none, 1 Notification, 2 SubscriptionConfirmation, else the
//! rest's first line), then the body. Seeds: real AWS, MinIO and SNS
//! bodies (README.md here).
#![no_main]

use latchkey_api::s3_events::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (sns_type, body) = match pick {
        0 => (None, &*text),
        1 => (Some("Notification"), &*text),
        2 => (Some("SubscriptionConfirmation"), &*text),
        _ => match text.split_once('\n') {
            Some((header, body)) => (Some(header), body),
            None => (None, &*text),
        },
    };
    let _ = parse(body, sns_type);
    let bare = parse(body, None);
    if !body.contains("\"Type\"") {
        let envelope = serde_json::json!({ "Type": "Notification", "Message": body }).to_string();
        let wrapped = parse(&envelope, Some("Notification"));
        match (&bare, &wrapped) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("bare {bare:?} vs in SNS {wrapped:?}"),
        }
    }
});
