//! What the probes found: one row per probe, and the [`Capabilities`] they
//! add up to. Printed as a plain table for people and as JSON for scripts.

use std::fmt;

use serde_json::{Value, json};

use crate::Capabilities;

pub(crate) const SIGNED_PUT: &str = "put_signed_headers";
pub(crate) const CHECKSUM: &str = "checksum_sha256";
pub(crate) const IF_NONE_MATCH: &str = "if_none_match";
pub(crate) const POST_OBJECT: &str = "post_object";
pub(crate) const MULTIPART: &str = "multipart";
pub(crate) const CORS: &str = "cors_config";
pub(crate) const LIFECYCLE: &str = "lifecycle";
pub(crate) const NOTIFICATIONS: &str = "event_notifications";
pub(crate) const STS: &str = "temporary_credentials";
pub(crate) const CLOCK_SKEW: &str = "clock_skew_enforced";
pub(crate) const EXPIRY: &str = "presigned_expiry";
pub(crate) const CLEANUP: &str = "cleanup";

/// What one probe concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The store does (enforces, or offers) this.
    Supported,
    /// The store answered, and does not.
    Unsupported,
    /// Not tried, e.g. STS without a role to assume.
    Skipped,
    /// The probe could not tell (a control request failed, the network broke,
    /// the key lacks a permission). Counted as unsupported in [`Capabilities`].
    Error(String),
}

impl ProbeResult {
    pub fn is_supported(&self) -> bool {
        matches!(self, Self::Supported)
    }

    fn word(&self) -> &'static str {
        match self {
            Self::Supported => "yes",
            Self::Unsupported => "no",
            Self::Skipped => "skipped",
            Self::Error(_) => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRow {
    /// The capability's name, as in [`Capabilities`] where it has a field.
    pub name: String,
    pub result: ProbeResult,
    /// What the store answered, e.g. `412 PreconditionFailed on second PUT`.
    pub detail: String,
}

impl ProbeRow {
    pub(crate) fn new(name: &str, supported: bool, detail: impl Into<String>) -> Self {
        let result = if supported {
            ProbeResult::Supported
        } else {
            ProbeResult::Unsupported
        };
        Self {
            name: name.to_owned(),
            result,
            detail: detail.into(),
        }
    }

    pub(crate) fn skipped(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            result: ProbeResult::Skipped,
            detail: detail.into(),
        }
    }

    /// The message goes in both the result and the detail, so the table
    /// (which prints only the detail) still says what went wrong.
    pub(crate) fn error(name: &str, why: impl Into<String>) -> Self {
        let why = why.into();
        Self {
            name: name.to_owned(),
            result: ProbeResult::Error(why.clone()),
            detail: why,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub rows: Vec<ProbeRow>,
    /// What the rows add up to; errors and skips count as unsupported.
    pub capabilities: Capabilities,
    /// Where the probe's objects lived (all removed unless a `cleanup` row
    /// says otherwise).
    pub prefix: String,
}

impl ProbeReport {
    pub(crate) fn new(rows: Vec<ProbeRow>, prefix: String) -> Self {
        let yes = |name: &str| {
            rows.iter()
                .any(|r| r.name == name && r.result.is_supported())
        };
        let capabilities = Capabilities {
            if_none_match: yes(IF_NONE_MATCH),
            checksum_sha256: yes(CHECKSUM),
            post_object: yes(POST_OBJECT),
            multipart: yes(MULTIPART),
            temporary_credentials: yes(STS),
            cors_config: yes(CORS),
            lifecycle: yes(LIFECYCLE),
            event_notifications: yes(NOTIFICATIONS),
            clock_skew_enforced: yes(CLOCK_SKEW),
        };
        Self {
            rows,
            capabilities,
            prefix,
        }
    }

    /// The row called `name`, if that probe ran.
    pub fn row(&self, name: &str) -> Option<&ProbeRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// `{"rows": [{"name", "result", "detail"}], "capabilities": {…}, "prefix"}`;
    /// `result` is `supported`, `unsupported`, `skipped` or `error`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let result = match r.result {
                    ProbeResult::Supported => "supported",
                    ProbeResult::Unsupported => "unsupported",
                    ProbeResult::Skipped => "skipped",
                    ProbeResult::Error(_) => "error",
                };
                json!({ "name": r.name, "result": result, "detail": r.detail })
            })
            .collect();
        json!({
            "rows": rows,
            "capabilities": serde_json::to_value(&self.capabilities).unwrap_or(Value::Null),
            "prefix": self.prefix,
        })
    }
}

/// A plain aligned table, then the capabilities as a `latchkey.toml` snippet.
impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEAD: [&str; 3] = ["capability", "result", "detail"];
        let name_w = self
            .rows
            .iter()
            .map(|r| r.name.len())
            .chain([HEAD[0].len()])
            .max()
            .unwrap_or(0);
        let res_w = self
            .rows
            .iter()
            .map(|r| r.result.word().len())
            .chain([HEAD[1].len()])
            .max()
            .unwrap_or(0);
        writeln!(f, "{:name_w$}  {:res_w$}  {}", HEAD[0], HEAD[1], HEAD[2])?;
        writeln!(f, "{:-<name_w$}  {:-<res_w$}  {:-<6}", "", "", "")?;
        for r in &self.rows {
            writeln!(
                f,
                "{:name_w$}  {:res_w$}  {}",
                r.name,
                r.result.word(),
                r.detail
            )?;
        }
        let c = &self.capabilities;
        writeln!(f)?;
        writeln!(f, "[store.capabilities]")?;
        for (name, value) in [
            ("if_none_match", c.if_none_match),
            ("checksum_sha256", c.checksum_sha256),
            ("post_object", c.post_object),
            ("multipart", c.multipart),
            ("temporary_credentials", c.temporary_credentials),
            ("cors_config", c.cors_config),
            ("lifecycle", c.lifecycle),
            ("event_notifications", c.event_notifications),
            ("clock_skew_enforced", c.clock_skew_enforced),
        ] {
            writeln!(f, "{name} = {value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ProbeReport {
        ProbeReport::new(
            vec![
                ProbeRow::new(IF_NONE_MATCH, false, "200 on second PUT"),
                ProbeRow::new(CHECKSUM, true, "400 BadDigest"),
                ProbeRow::skipped(STS, "not configured"),
                ProbeRow::error(MULTIPART, "connection reset"),
            ],
            ".latchkey-probe/x/".into(),
        )
    }

    #[test]
    fn capabilities_count_only_supported_rows() {
        let c = report().capabilities;
        assert!(c.checksum_sha256);
        assert!(!c.if_none_match);
        assert!(!c.temporary_credentials);
        assert!(!c.multipart);
        // No row at all: not supported either.
        assert!(!c.post_object);
    }

    #[test]
    fn table_is_aligned() {
        let text = report().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "capability             result   detail");
        assert_eq!(
            lines[2],
            "if_none_match          no       200 on second PUT"
        );
        assert_eq!(lines[4], "temporary_credentials  skipped  not configured");
        assert!(text.contains("\n[store.capabilities]\nif_none_match = false\n"));
    }

    #[test]
    fn json_names_results() {
        let j = report().to_json();
        assert_eq!(j["rows"][0]["result"], "unsupported");
        assert_eq!(j["rows"][3]["result"], "error");
        assert_eq!(j["rows"][3]["detail"], "connection reset");
        assert_eq!(j["capabilities"]["checksum_sha256"], true);
        assert_eq!(j["prefix"], ".latchkey-probe/x/");
    }
}
