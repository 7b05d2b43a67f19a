//! Delivers outbox events to the app's backend, signed the Standard Webhooks
//! way: `webhook-id`, `webhook-timestamp` and `webhook-signature:
//! v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is
//! the base64 part of a `whsec_…` secret. At-least-once: an event is marked
//! delivered only after a 2xx; failures retry with jittered exponential
//! backoff for up to three days, then the event is dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use latchkey_domain::Secret;
use latchkey_ledger::{OutboxEvent, UploadRepo};
use rand::Rng;
use sha2::Sha256;
use time::OffsetDateTime;

/// How long an event is retried before it is dead-lettered.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long one instance holds a claimed event before another may take it.
const LEASE: Duration = Duration::from_secs(30);
const BATCH: u32 = 8;

pub struct WebhookSender {
    pub url: String,
    retry_base: Duration,
    key: Vec<u8>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("webhooks.secret must be whsec_ followed by base64 (as Standard Webhooks secrets are)")]
pub struct BadSecret;

impl WebhookSender {
    pub fn new(
        url: String,
        secret: &Secret,
        timeout: Duration,
        retry_base: Duration,
    ) -> Result<Self, BadSecret> {
        let raw = secret.expose();
        let b64 = raw.strip_prefix("whsec_").unwrap_or(raw);
        let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
        if key.is_empty() {
            return Err(BadSecret);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with a timeout builds");
        Ok(Self {
            url,
            retry_base,
            key,
            http,
        })
    }

    /// `v1,<signature>` for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// One delivery attempt. The message id is stable across retries so the
    /// receiver can deduplicate.
    async fn deliver(&self, ev: &OutboxEvent, now: OffsetDateTime) -> Result<(), String> {
        let msg_id = format!("msg_{}_{}", ev.upload_id, ev.id);
        let body = serde_json::json!({
            "type": ev.event_type,
            "timestamp": ev.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "data": ev.payload,
        })
        .to_string();
        let ts = now.unix_timestamp();
        let res = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", self.sign(&msg_id, ts, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("sending: {}", e.without_url()))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", res.status().as_u16()))
        }
    }
}

/// The wait before attempt `attempts + 1`: `base`, 4×, 16×, … capped at six
/// hours, each ±20% so a receiver that was down is not hit by every retry at
/// once.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let base = base.as_secs_f64() * 4f64.powi(attempts.min(10) as i32);
    let capped = base.min(6.0 * 3600.0);
    let jitter = rand::rng().random_range(0.8..1.2);
    Duration::from_secs_f64(capped * jitter)
}

/// Claims and delivers one batch; returns how many events were handled.
pub async fn deliver_batch(
    ledger: &dyn UploadRepo,
    sender: &WebhookSender,
) -> Result<usize, latchkey_ledger::LedgerError> {
    let now = OffsetDateTime::now_utc();
    let events = ledger.outbox_claim(now, LEASE, BATCH).await?;
    for ev in &events {
        match sender.deliver(ev, now).await {
            Ok(()) => {
                ledger
                    .outbox_delivered(ev.id, OffsetDateTime::now_utc())
                    .await?
            }
            Err(why) => {
                let now = OffsetDateTime::now_utc();
                let next = now + backoff(sender.retry_base, ev.attempts);
                let give_up = next - ev.created_at > GIVE_UP_AFTER;
                tracing::warn!(event = ev.id, attempts = ev.attempts + 1, %why, dead = give_up, "webhook delivery failed");
                ledger
                    .outbox_failed(ev.id, (!give_up).then_some(next), &why, now)
                    .await?;
            }
        }
    }
    Ok(events.len())
}

/// Runs until the task is dropped.
pub async fn run(ledger: Arc<dyn UploadRepo>, sender: WebhookSender, idle: Duration) {
    loop {
        match deliver_batch(ledger.as_ref(), &sender).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "webhook worker: ledger error"),
        }
        tokio::time::sleep(idle).await;
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no v1 signature matches")]
    Mismatch,
    #[error("timestamp is more than five minutes away from now (replayed or a wrong clock)")]
    Stale,
    #[error("malformed webhook-timestamp")]
    Timestamp,
}

/// What a receiver does with a delivery (`latchkey webhooks verify`): the
/// signature header may carry several space-separated `v1,…` signatures
/// (during secret rotation); one must match, and the timestamp must be
/// within five minutes of `now`.
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    body: &str,
    signature_header: &str,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    use subtle::ConstantTimeEq;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Timestamp)?;
    if (now.unix_timestamp() - ts).abs() > 300 {
        return Err(VerifyError::Stale);
    }
    let sender = WebhookSender::new(
        String::new(),
        secret,
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .map_err(|_| VerifyError::Mismatch)?;
    let want = sender.sign(msg_id, ts, body);
    let ok = signature_header
        .split_whitespace()
        .any(|sig| bool::from(sig.as_bytes().ct_eq(want.as_bytes())));
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example from the Standard Webhooks specification.
        let s = WebhookSender::new(
            "http://127.0.0.1:1/".into(),
            &Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Duration::from_secs(5);
        assert!(backoff(b, 0) < Duration::from_secs(7));
        assert!(backoff(b, 3) > Duration::from_secs(200));
        assert!(backoff(b, 30) <= Duration::from_secs(6 * 3600 * 12 / 10));
    }

    #[test]
    fn verify_accepts_the_reference_and_refuses_tampering() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let now = OffsetDateTime::from_unix_timestamp(1614265330 + 10).unwrap();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert_eq!(
            verify(
                &secret,
                id,
                "1614265330",
                body,
                &format!("v1,bogus {sig}"),
                now
            ),
            Ok(())
        );
        assert_eq!(
            verify(&secret, id, "1614265330", "{}", sig, now),
            Err(VerifyError::Mismatch)
        );
        let later = now + Duration::from_secs(600);
        assert_eq!(
            verify(&secret, id, "1614265330", body, sig, later),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&secret, id, "soon", body, sig, now),
            Err(VerifyError::Timestamp)
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        let d = Duration::from_secs(1);
        assert!(WebhookSender::new("u".into(), &Secret::new("whsec_!!!"), d, d).is_err());
    }
}
