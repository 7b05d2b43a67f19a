//! Browser POST uploads: a SigV4-signed policy document plus the form fields
//! that must accompany it.
//!
//! The policy is the only thing signed, so everything the store should enforce
//! (exact key, exact content type, size range, expiry) has to be a condition in
//! it, and every exact-match condition must also be sent as a form field.

use std::borrow::Cow;

use time::OffsetDateTime;

use crate::Error;
use crate::canonical::ALGORITHM;
use crate::encode::{AmzDate, write_iso8601_millis};
use crate::signer::{Signer, decimal};

/// What one browser upload may do. Every field becomes an exact-match
/// condition except `content_length_range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    /// Must match the bucket the form is posted to.
    pub bucket: String,
    /// The exact key: grants never let a client choose its own.
    pub key: String,
    /// When the form stops working; the store compares it with its own clock.
    pub expiration: OffsetDateTime,
    /// Exact `Content-Type` of the file, also sent as a form field.
    pub content_type: Option<String>,
    /// Inclusive byte bounds on the file, enforced by the store.
    pub content_length_range: Option<(u64, u64)>,
    /// Exact-match conditions that are also form fields, e.g.
    /// `success_action_status` or `x-amz-meta-*`.
    pub extra_fields: Vec<(String, String)>,
}

/// A form field's name: the names the signer sets are static, so a form
/// costs no allocation for them (a POST grant is on the broker's hot path).
pub type FieldName = Cow<'static, str>;

/// The fields to send, in order; the client appends the `file` field last
/// (S3 ignores everything after it).
#[derive(Clone, PartialEq, Eq)]
pub struct PostForm {
    /// `(name, value)` pairs, field names as S3 documents them.
    pub fields: Vec<(FieldName, String)>,
}

impl PostForm {
    /// A field's value by (case-insensitive) name; form field names are.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A session token is a bearer credential, so `Debug` shows field names only.
impl std::fmt::Debug for PostForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.fields.iter().map(|(n, _)| n.as_ref()))
            .finish()
    }
}

/// Field names the signer fills in; an extra field with one of these names
/// would either be ignored by the store or contradict the policy.
const RESERVED_FIELDS: [&str; 9] = [
    "key",
    "bucket",
    "content-type",
    "policy",
    "file",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-signature",
];

impl Signer {
    /// Builds and signs a POST policy. Fails if the policy has already expired
    /// at `now`, if the length range is inverted, or if an extra field's name
    /// is not a plain token (`[A-Za-z0-9_-]+`), reuses a name the signer
    /// sets or another extra field's (case-insensitively).
    pub fn post_policy(&self, policy: &PostPolicy, now: OffsetDateTime) -> Result<PostForm, Error> {
        if policy.expiration <= now {
            return Err(Error::Policy(
                "the expiration is not after the signing time",
            ));
        }
        if let Some((min, max)) = policy.content_length_range
            && min > max
        {
            return Err(Error::Policy(
                "content-length-range minimum exceeds maximum",
            ));
        }
        for (i, (name, _)) in policy.extra_fields.iter().enumerate() {
            // Stores lowercase form field names and strip a leading `$` from
            // condition names only, so any other name would make a
            // condition no field can meet; and of two fields with one name
            // the store reads only the last. Either way the form would be
            // refused (crates/latchkey-s3local/tests/s3/post_props.rs).
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::Policy(
                    "an extra field name is not made of letters, digits, '-' and '_'",
                ));
            }
            if RESERVED_FIELDS
                .iter()
                .chain(&["x-amz-security-token"])
                .any(|reserved| reserved.eq_ignore_ascii_case(name))
            {
                return Err(Error::Policy(
                    "an extra field reuses a name the signer sets",
                ));
            }
            if policy.extra_fields[..i]
                .iter()
                .any(|(other, _)| other.eq_ignore_ascii_case(name))
            {
                return Err(Error::Policy("two extra fields share a name"));
            }
        }
        let date = AmzDate::new(now)?;
        let credential = self.credential(&date);
        let token = self.session_token();

        let mut fields: Vec<(FieldName, String)> =
            Vec::with_capacity(9 + policy.extra_fields.len());
        // The policy document is written directly rather than through
        // `serde_json::Value` (a map and several strings per condition): the
        // profile showed building and dropping those dominating a POST grant.
        // The bytes are exactly what serde_json would produce.
        let mut json = String::with_capacity(512);
        json.push_str(r#"{"expiration":""#);
        write_iso8601_millis(&mut json, policy.expiration)?;
        json.push_str(r#"","conditions":[{"bucket":"#);
        json_string(&mut json, &policy.bucket);
        json.push('}');
        let mut exact = |name: FieldName, value: String| {
            json.push_str(",{");
            json_string(&mut json, &name);
            json.push(':');
            json_string(&mut json, &value);
            json.push('}');
            fields.push((name, value));
        };
        exact("key".into(), policy.key.clone());
        if let Some(ct) = &policy.content_type {
            exact("Content-Type".into(), ct.clone());
        }
        for (name, value) in &policy.extra_fields {
            exact(name.clone().into(), value.clone());
        }
        exact("x-amz-algorithm".into(), ALGORITHM.to_owned());
        exact("x-amz-credential".into(), credential);
        exact("x-amz-date".into(), date.datetime().to_owned());
        if let Some(token) = token {
            exact("x-amz-security-token".into(), token.to_owned());
        }
        if let Some((min, max)) = policy.content_length_range {
            let mut digits = [0u8; 20];
            json.push_str(r#",["content-length-range","#);
            json.push_str(decimal(min, &mut digits));
            json.push(',');
            json.push_str(decimal(max, &mut digits));
            json.push(']');
        }
        json.push_str("]}");
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, json);
        let signature = self.sign_raw(&date, &encoded);
        fields.push(("policy".into(), encoded));
        fields.push(("x-amz-signature".into(), signature));
        Ok(PostForm { fields })
    }

    /// Signs an already-encoded policy as-is: for policies with conditions
    /// [`PostPolicy`] cannot express (`starts-with`), and for AWS's example.
    /// `now` must be the `x-amz-date` written inside the policy.
    pub fn sign_policy(&self, base64_policy: &str, now: OffsetDateTime) -> Result<String, Error> {
        let date = AmzDate::new(now)?;
        Ok(self.sign_raw(&date, base64_policy))
    }
}

/// A JSON string literal, escaped exactly as `serde_json` escapes it.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    // Keys, types and dates need no escaping: test every byte without an
    // early exit (a loop the compiler vectorises) and copy them at once.
    let needs_escape = s.as_bytes().iter().fold(0u8, |any, &b| {
        any | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\')
    });
    if needs_escape == 0 {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for c in [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ] {
                out.push(c as char);
            }
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "plain",
            "quote\" back\\slash",
            "ctl\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "été 😀 \u{7f}",
            "",
        ] {
            let mut out = String::new();
            json_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }
}
