//! Configuration: defaults, then the TOML file (`--config` /
//! `LATCHKEY_CONFIG`), then `LATCHKEY_SECTION__KEY` environment variables,
//! then command-line flags — merged into typed structs, then validated into
//! the domain's types (profiles) before anything starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use latchkey_domain::{
    ByteSize, HeifOriginal, KeyTemplate, Mode, Process, Profile, ProfileName, Secret, VariantDef,
    default_profiles, parse_duration,
};
use latchkey_store::Capabilities;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store, the SQLite ledger and generated secrets live.
    pub data_dir: PathBuf,
    /// The profile used when a request names none.
    pub default_profile: String,
    pub server: ServerConfig,
    pub ledger: LedgerConfig,
    pub store: StoreConfig,
    pub auth: AuthSection,
    pub webhooks: WebhookConfig,
    pub reconciler: ReconcilerConfig,
    pub events: EventsConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub media: MediaConfig,
    pub tus: TusConfig,
    /// Overrides of the built-in `photo` and `file` profiles, and new ones.
    pub profiles: BTreeMap<String, ProfileConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./latchkey-data"),
            default_profile: "photo".into(),
            server: ServerConfig::default(),
            ledger: LedgerConfig::default(),
            store: StoreConfig::default(),
            auth: AuthSection::default(),
            webhooks: WebhookConfig::default(),
            reconciler: ReconcilerConfig::default(),
            events: EventsConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            media: MediaConfig::default(),
            tus: TusConfig::default(),
            profiles: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the broker listens on (`--listen`).
    pub listen: String,
    /// The broker's URL as clients reach it; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// Origins browsers may call the API from (CORS), exactly as they send
    /// them (`https://app.example.com`). The default `["*"]` suits
    /// development; production should list the app's own origins
    /// (docs/SECURITY.md).
    pub cors_origins: Vec<String>,
    /// Longest a client may take to send a request's headers (slowloris).
    pub header_read_timeout: String,
    /// Longest a request body may stay silent; uploads may take as long as
    /// they need while bytes keep arriving.
    pub body_idle_timeout: String,
    /// Most client connections open at once on each listener (the broker's
    /// and the embedded store's). At the limit the listener stops accepting
    /// and further connections wait in the kernel's backlog until one
    /// closes (src/serve.rs), so idle clients cannot exhaust file
    /// descriptors. Each needs a file descriptor: at startup the soft
    /// open-file limit is raised toward what this needs (up to the hard
    /// limit), with a warning if that is still short (src/fd_limit.rs).
    pub max_connections: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            cors_origins: vec!["*".into()],
            header_read_timeout: "10s".into(),
            body_idle_timeout: "30s".into(),
            max_connections: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://{data_dir}/ledger.db`.
    pub url: Option<String>,
    /// Apply migrations when `serve` starts. Turn off when deploys run
    /// `latchkey migrate` as a separate step.
    pub migrate: bool,
    pub max_connections: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            url: None,
            migrate: true,
            max_connections: 16,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Shared secret for `POST /v1/events/s3` (as `Authorization: Bearer`
    /// or `?token=`); unset, the endpoint refuses every notification.
    pub token: Option<Secret>,
    /// Hosts an SNS SubscribeURL may point at (suffix match, https only).
    pub subscribe_hosts: Vec<String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            token: None,
            subscribe_hosts: vec!["amazonaws.com".into()],
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilerConfig {
    pub enabled: bool,
    /// Time between passes.
    pub every: String,
    /// How long past its expiry a pending upload is left alone.
    pub grace: String,
    /// How old an object nobody owns must be before the sweep removes it.
    pub orphan_grace: String,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            every: "30s".into(),
            grace: "1m".into(),
            orphan_grace: "10m".into(),
        }
    }
}

/// The photo pipeline (DESIGN §7): its worker pool and the limits of each
/// isolated worker process.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Jobs this instance processes at once. 0: an ingest-only instance
    /// (photos it takes in wait in `processing` for an instance with
    /// workers on the same ledger and store).
    pub workers: usize,
    /// Refused above this many pixels, from the header, before decoding.
    pub max_pixels: u64,
    /// Refused when a side is longer.
    pub max_side: u32,
    pub max_frames: u32,
    /// Address space of one worker process (`RLIMIT_AS`).
    pub memory_limit: String,
    /// CPU time of one worker process (`RLIMIT_CPU`).
    pub cpu_limit: String,
    /// Wall-clock time after which a worker is killed.
    pub timeout: String,
    /// How long a claimed job is this instance's; a job whose instance
    /// died is claimed again after it.
    pub lease: String,
    /// How often an idle pool looks for jobs.
    pub poll: String,
    /// Claims of one job (transient store failures) before it is rejected.
    pub max_attempts: u32,
    /// `thumb` and `medium` variants as `jpeg` or `webp` (lossless).
    pub variant_format: String,
    pub thumb_size: u32,
    pub medium_size: u32,
    pub jpeg_quality: u8,
    /// The worker program and arguments; empty: this binary's hidden
    /// `media-worker` subcommand.
    pub worker_command: Vec<String>,
    /// The HEIC/HEIF/AVIF decoder (Debian's `heif-convert`).
    pub heif_decoder: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            max_pixels: 100_000_000,
            max_side: 20_000,
            max_frames: 1_000,
            memory_limit: "1GiB".into(),
            cpu_limit: "60s".into(),
            timeout: "2m".into(),
            lease: "5m".into(),
            poll: "250ms".into(),
            max_attempts: 5,
            variant_format: "jpeg".into(),
            thumb_size: 256,
            medium_size: 1280,
            jpeg_quality: 85,
            worker_command: Vec::new(),
            heif_decoder: "heif-convert".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The S3-compatible store built into latchkey, over `{data_dir}/store`.
    #[default]
    Embedded,
    /// Any S3 API: AWS, Garage, MinIO, R2, Ceph.
    S3,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub bucket: String,
    /// Embedded only: where the store listens (`--store-listen`).
    pub listen: String,
    /// The store's URL as clients reach it, used in grants. Defaults to
    /// `http://{listen}` (embedded) or `endpoint` (s3).
    pub public_url: Option<String>,
    /// S3 only: the endpoint the broker calls.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// What the store enforces; the embedded store enforces everything.
    /// `latchkey store check` probes a store and prints this table.
    pub capabilities: Option<Capabilities>,
    /// S3 only: the role STS AssumeRole hands out scoped credentials for
    /// (AWS, MinIO, Ceph), enabling the `credentials` mode there.
    pub sts_role_arn: Option<String>,
    /// S3 only: the STS endpoint, when it is not the S3 endpoint.
    pub sts_endpoint: Option<String>,
    /// Embedded only: the store tells the broker about each new object
    /// in-process, so an upload whose client never completes commits at
    /// once. Off, only `complete`, event notifications and the reconciler
    /// commit.
    pub notify: bool,
    /// Bound on each call the broker makes to the store (connect, attempt,
    /// whole operation): a store that never answers yields 503.
    pub timeout: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            bucket: "latchkey".into(),
            listen: "127.0.0.1:9000".into(),
            public_url: None,
            endpoint: None,
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            capabilities: None,
            sts_role_arn: None,
            sts_endpoint: None,
            notify: true,
            timeout: "10s".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// HS256 secret; when neither this nor a JWKS is set, a dev secret is
    /// generated in the data dir and `latchkey token` signs with it.
    pub jwt_secret: Option<Secret>,
    /// RS256/ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `sha256:<hex>` hashes of `lk_…` API keys for app backends.
    pub api_keys: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed; no URL, no deliveries (events stay in the outbox).
    pub url: Option<String>,
    /// `whsec_<base64>`, as Standard Webhooks receivers expect.
    pub secret: Option<Secret>,
    /// Per-attempt timeout.
    pub timeout: String,
    /// How often an idle worker looks for new events.
    pub poll: String,
    /// The wait before the first retry; each later one is four times longer
    /// (capped at six hours), for up to three days.
    pub retry_base: String,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            timeout: "10s".into(),
            poll: "1s".into(),
            retry_base: "5s".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Lifetime of presigned download URLs.
    pub download_ttl: String,
    /// Largest JSON request body.
    pub json_body: ByteSize,
    /// Largest page of `GET /v1/uploads`.
    pub max_page: u32,
    /// Grants one user may create per minute on one instance (0 = no limit).
    pub grants_per_minute: u32,
    /// How many grants a user may ask for at once before the rate applies.
    pub grant_burst: u32,
    /// Multipart part size (at least 5 MiB, S3's minimum); grown for files
    /// that would need more than 10,000 parts.
    pub part_size: ByteSize,
    /// Proxied uploads up to this size are one streamed PutObject; larger
    /// ones go to the store as a multipart upload. At most 5 GiB (S3's
    /// limit for one PutObject), which is the default: a streamed PUT
    /// holds no part in memory and the store does not have to assemble
    /// parts. A wrong body never becomes a committed object either way
    /// (the store or the broker checks the declared SHA-256 before the
    /// commit); with multipart it never becomes an object at all.
    pub proxy_single_put: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            download_ttl: "5m".into(),
            json_body: ByteSize(64 * 1024),
            max_page: 100,
            grants_per_minute: 120,
            grant_burst: 60,
            part_size: ByteSize(8 * 1024 * 1024),
            proxy_single_put: ByteSize(latchkey_api::MAX_SINGLE_PUT),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `latchkey=debug`; `RUST_LOG` wins.
    pub level: String,
}

/// The tus endpoint (`/tus/`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TusConfig {
    /// Where each unfinished tus upload buffers the part it is filling (at
    /// most one part, 5 MiB, per upload); defaults to `{data_dir}/tus`.
    /// Local to the instance: see docs/ARCHITECTURE.md on resuming
    /// elsewhere.
    pub buffer_dir: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// A profile as written in TOML: every field optional, laid over the
/// built-in profile of the same name (or over `file` for new names).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    pub content_types: Option<Vec<String>>,
    pub min_bytes: Option<ByteSize>,
    pub max_bytes: Option<ByteSize>,
    pub modes: Option<Vec<Mode>>,
    pub key_template: Option<String>,
    pub grant_ttl: Option<String>,
    pub process: Option<Process>,
    pub quota_bytes: Option<ByteSize>,
    pub quota_count: Option<u64>,
    pub require_attach: Option<bool>,
    pub unattached_ttl: Option<String>,
    /// Photo variants (`process = "image"`), e.g.
    /// `[{ name = "thumb", size = 256, format = "jpeg" }]`; unset: `thumb`
    /// and `medium` from `[media]`; empty: no variants.
    pub variants: Option<Vec<VariantDef>>,
    /// The original of a HEIC/HEIF photo: `"jpeg"` (re-encoded; the
    /// default) or `"keep"` (the HEIC/HEIF itself, EXIF and XMP removed).
    pub heif_original: Option<HeifOriginal>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Flags that override the file and environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub store_listen: Option<String>,
}

impl Config {
    /// Loads the layered configuration. `file` is `--config`; when absent,
    /// `LATCHKEY_CONFIG` names the file; with neither, only defaults and the
    /// environment apply.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let env_file = std::env::var_os("LATCHKEY_CONFIG").map(PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} not found",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        // Only `SECTION__KEY` variables (and DATA_DIR / DEFAULT_PROFILE) are
        // configuration; LATCHKEY_TOKEN and friends belong to the CLI.
        fig = fig.merge(
            Env::prefixed("LATCHKEY_")
                .filter(|k| k.as_str().contains("__") || k == "data_dir" || k == "default_profile")
                .split("__"),
        );
        if let Some(d) = &overrides.data_dir {
            fig = fig.merge(Serialized::default("data_dir", d));
        }
        if let Some(l) = &overrides.listen {
            fig = fig.merge(Serialized::default("server.listen", l));
        }
        if let Some(l) = &overrides.store_listen {
            fig = fig.merge(Serialized::default("store.listen", l));
        }
        let config: Config = fig.extract().map_err(Box::new)?;
        config.profiles()?;
        config.limits.download_ttl_duration()?;
        for (name, v) in [
            ("reconciler.every", &config.reconciler.every),
            ("reconciler.grace", &config.reconciler.grace),
            ("reconciler.orphan_grace", &config.reconciler.orphan_grace),
            ("webhooks.timeout", &config.webhooks.timeout),
            ("webhooks.poll", &config.webhooks.poll),
            ("webhooks.retry_base", &config.webhooks.retry_base),
            ("media.cpu_limit", &config.media.cpu_limit),
            ("media.timeout", &config.media.timeout),
            ("media.lease", &config.media.lease),
            ("media.poll", &config.media.poll),
            ("store.timeout", &config.store.timeout),
            (
                "server.header_read_timeout",
                &config.server.header_read_timeout,
            ),
            ("server.body_idle_timeout", &config.server.body_idle_timeout),
        ] {
            parse_duration(v).map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        if config.server.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections: must be at least 1".into(),
            ));
        }
        latchkey_domain::ByteSize::parse(&config.media.memory_limit)
            .map_err(|e| ConfigError::Invalid(format!("media.memory_limit: {e}")))?;
        if !matches!(config.media.variant_format.as_str(), "jpeg" | "webp") {
            return Err(ConfigError::Invalid(
                "media.variant_format: use jpeg or webp".into(),
            ));
        }
        if config.webhooks.url.is_some() && config.webhooks.secret.is_none() {
            return Err(ConfigError::Invalid(
                "webhooks.url is set but webhooks.secret is not".into(),
            ));
        }
        Ok(config)
    }

    pub fn tus_buffer_dir(&self) -> PathBuf {
        self.tus
            .buffer_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tus"))
    }

    pub fn ledger_url(&self) -> String {
        self.ledger
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ledger.db").display()))
    }

    /// The built-in profiles with the file's overrides laid over them.
    pub fn profiles(&self) -> Result<BTreeMap<String, Profile>, ConfigError> {
        let mut out: BTreeMap<String, Profile> = default_profiles()
            .into_iter()
            .map(|p| (p.name.to_string(), p))
            .collect();
        for (name, raw) in &self.profiles {
            let base = out
                .get(name)
                .cloned()
                .unwrap_or_else(|| out["file"].clone());
            let profile = raw.apply(name, base)?;
            out.insert(name.clone(), profile);
        }
        if !out.contains_key(&self.default_profile) {
            return Err(ConfigError::Invalid(format!(
                "default_profile {:?} is not a profile",
                self.default_profile
            )));
        }
        Ok(out)
    }
}

impl Config {
    /// This configuration with every profile spelled out in full (built-ins
    /// and overrides merged), as `latchkey config` prints it: the output is
    /// itself a valid configuration file.
    pub fn effective(&self) -> Result<Config, ConfigError> {
        let mut out = self.clone();
        out.profiles = self
            .profiles()?
            .values()
            .map(|p| (p.name.to_string(), ProfileConfig::from(p)))
            .collect();
        out.ledger.url = Some(self.ledger_url());
        Ok(out)
    }
}

impl From<&Profile> for ProfileConfig {
    fn from(p: &Profile) -> Self {
        Self {
            content_types: Some(p.content_types.clone()),
            min_bytes: Some(p.min_bytes),
            max_bytes: Some(p.max_bytes),
            modes: Some(p.modes.clone()),
            key_template: Some(p.key_template.as_str().to_owned()),
            grant_ttl: Some(format!("{}s", p.grant_ttl.as_secs())),
            process: Some(p.process),
            quota_bytes: p.quota_bytes,
            quota_count: p.quota_count,
            require_attach: Some(p.require_attach),
            unattached_ttl: Some(format!("{}s", p.unattached_ttl.as_secs())),
            variants: p.variants.clone(),
            heif_original: Some(p.heif_original),
        }
    }
}

/// A duration that `Config::load` has already validated.
pub fn checked_duration(s: &str) -> std::time::Duration {
    parse_duration(s).unwrap_or(std::time::Duration::from_secs(30))
}

impl LimitsConfig {
    pub fn download_ttl_duration(&self) -> Result<std::time::Duration, ConfigError> {
        parse_duration(&self.download_ttl)
            .map_err(|e| ConfigError::Invalid(format!("limits.download_ttl: {e}")))
    }
}

impl ProfileConfig {
    fn apply(&self, name: &str, mut p: Profile) -> Result<Profile, ConfigError> {
        let bad = |m: String| ConfigError::Invalid(format!("profiles.{name}: {m}"));
        p.name = ProfileName::parse(name).ok_or_else(|| {
            bad("profile names are 1-32 characters of a-z, 0-9, '_' or '-'".into())
        })?;
        if let Some(v) = &self.content_types {
            if v.is_empty() {
                return Err(bad("content_types must not be empty".into()));
            }
            p.content_types = v.clone();
        }
        if let Some(v) = self.min_bytes {
            p.min_bytes = v;
        }
        if let Some(v) = self.max_bytes {
            p.max_bytes = v;
        }
        if p.min_bytes > p.max_bytes {
            return Err(bad("min_bytes is larger than max_bytes".into()));
        }
        if let Some(v) = &self.modes {
            p.modes = v.clone();
        }
        if let Some(v) = &self.key_template {
            p.key_template = KeyTemplate::parse(v).map_err(|e| bad(e.to_string()))?;
        }
        if let Some(v) = &self.grant_ttl {
            let ttl = parse_duration(v).map_err(|e| bad(e.to_string()))?;
            // SigV4 presigned URLs cannot outlive seven days.
            if ttl.as_secs() == 0 || ttl.as_secs() > 604_800 {
                return Err(bad("grant_ttl must be between 1s and 7d".into()));
            }
            p.grant_ttl = ttl;
        }
        if let Some(v) = self.process {
            p.process = v;
        }
        if self.quota_bytes.is_some() {
            p.quota_bytes = self.quota_bytes;
        }
        if self.quota_count.is_some() {
            p.quota_count = self.quota_count;
        }
        if let Some(v) = self.require_attach {
            p.require_attach = v;
        }
        if let Some(v) = &self.unattached_ttl {
            p.unattached_ttl = parse_duration(v).map_err(|e| bad(e.to_string()))?;
        }
        if let Some(v) = &self.variants {
            for (i, d) in v.iter().enumerate() {
                let valid_name = (1..=32).contains(&d.name.len())
                    && d.name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !valid_name || d.name == "original" {
                    return Err(bad(format!(
                        "variant name {:?}: 1-32 characters of a-z, 0-9, '_' or '-', not \"original\"",
                        d.name
                    )));
                }
                if v[..i].iter().any(|o| o.name == d.name) {
                    return Err(bad(format!("variant {:?} is defined twice", d.name)));
                }
                if d.size == 0 || d.size > 20_000 {
                    return Err(bad(format!(
                        "variant {:?}: size must be between 1 and 20000",
                        d.name
                    )));
                }
            }
            p.variants = Some(v.clone());
        }
        if let Some(v) = self.heif_original {
            p.heif_original = v;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("latchkey.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_overrides_defaults_and_profiles_merge() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[server]\nlisten = \"127.0.0.1:7000\"\n[profiles.photo]\nmax_bytes = \"2MiB\"\n[profiles.avatar]\ncontent_types = [\"image/png\"]\nquota_count = 3\n",
        );
        let c = Config::load(Some(&p), &Overrides::default()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7000");
        let profiles = c.profiles().unwrap();
        assert_eq!(profiles["photo"].max_bytes.0, 2 << 20);
        assert_eq!(
            profiles["photo"].content_types.len(),
            7,
            "unset fields keep the built-in value"
        );
        assert_eq!(profiles["avatar"].quota_count, Some(3));
        assert_eq!(
            profiles["avatar"].max_bytes.0,
            5 << 30,
            "new profiles start from `file`"
        );
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[server]\nlisten = \"127.0.0.1:7000\"\n");
        let o = Overrides {
            listen: Some("127.0.0.1:7001".into()),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&p), &o).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7001");
        assert_eq!(c.ledger_url(), "sqlite:///tmp/x/ledger.db");
    }

    #[test]
    fn mistakes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "[server]\nlisen = \"x\"\n",
            "[profiles.photo]\nmax_bytes = \"lots\"\n",
            "[profiles.photo]\nkey_template = \"{id}\"\n",
            "[profiles.photo]\ngrant_ttl = \"8d\"\n",
            "[profiles.Photo]\n",
            "default_profile = \"nope\"\n",
            "[store]\nkind = \"ftp\"\n",
            "[server]\nmax_connections = 0\n",
        ] {
            let p = write(dir.path(), bad);
            assert!(
                Config::load(Some(&p), &Overrides::default()).is_err(),
                "{bad}"
            );
        }
        assert!(
            Config::load(
                Some(&dir.path().join("missing.toml")),
                &Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn profiles_may_define_their_own_variants() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[profiles.avatar]\nprocess = \"image\"\ncontent_types = [\"image/*\"]\nvariants = [{ name = \"small\", size = 64, format = \"webp\" }]\n",
        );
        let c = Config::load(Some(&p), &Overrides::default()).unwrap();
        let profiles = c.profiles().unwrap();
        assert_eq!(
            profiles["avatar"].variants,
            Some(vec![VariantDef {
                name: "small".into(),
                size: 64,
                format: latchkey_domain::VariantFormat::Webp,
            }])
        );
        assert_eq!(profiles["photo"].variants, None, "unset: [media] decides");
        // `latchkey config` prints them back.
        let text = toml::to_string_pretty(&c.effective().unwrap()).unwrap();
        let p = write(dir.path(), &text);
        let back = Config::load(Some(&p), &Overrides::default()).unwrap();
        assert_eq!(
            back.profiles().unwrap()["avatar"].variants,
            profiles["avatar"].variants
        );
        for bad in [
            "variants = [{ name = \"original\", size = 64, format = \"jpeg\" }]",
            "variants = [{ name = \"Big\", size = 64, format = \"jpeg\" }]",
            "variants = [{ name = \"a\", size = 0, format = \"jpeg\" }]",
            "variants = [{ name = \"a\", size = 64, format = \"gif\" }]",
            "variants = [{ name = \"a\", size = 64, format = \"jpeg\" }, { name = \"a\", size = 9, format = \"jpeg\" }]",
            "variants = [{ name = \"a\", size = 64 }]",
        ] {
            let p = write(dir.path(), &format!("[profiles.avatar]\n{bad}\n"));
            assert!(
                Config::load(Some(&p), &Overrides::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::default().effective().unwrap();
        let text = toml::to_string_pretty(&c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &text);
        let back = Config::load(Some(&p), &Overrides::default()).unwrap();
        assert_eq!(back.profiles().unwrap()["photo"].max_bytes.0, 50 << 20);
    }
}
