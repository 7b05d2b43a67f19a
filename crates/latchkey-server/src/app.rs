//! Wiring: from a [`Config`] to a running broker (and, in the embedded
//! default, the S3-compatible store beside it). Tests build the same
//! [`Application`] on port 0 that `latchkey serve` runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use latchkey_api::ratelimit::GrantLimiter;
use latchkey_api::state::EventSettings;
use latchkey_api::{AppState, AuthConfig, Authenticator, Limits};
use latchkey_domain::Secret;
use latchkey_s3local::{LocalStore, LocalStoreConfig, StoreHandle};
use latchkey_sigv4::{Credentials, Endpoint, Signer};
use latchkey_store::{Capabilities, S3Store, S3StoreConfig};
use tokio::net::TcpListener;

use crate::config::{Config, StoreKind, checked_duration};
use crate::http::layers;
use crate::secrets::{self, DevSecrets};
use crate::workers::webhooks::{self, WebhookSender};
use crate::workers::{instance_id, reconciler};

pub struct Application {
    state: Arc<AppState>,
    workers: Workers,
    listener: TcpListener,
    router: axum::Router,
    store: Option<StoreHandle>,
    broker_addr: SocketAddr,
    public_url: String,
    store_public_url: String,
    reconciler: Arc<reconciler::Reconciler>,
    /// This instance's name for leases.
    holder: String,
    /// The HS256 secret `latchkey token` signs with (dev mode or configured).
    pub token_secret: Option<Secret>,
    /// `server.header_read_timeout` and `server.max_connections`.
    limits: crate::serve::Limits,
}

fn grant_limiter(config: &Config) -> Option<GrantLimiter> {
    let l = &config.limits;
    let per_minute = std::num::NonZeroU32::new(l.grants_per_minute)?;
    let burst = std::num::NonZeroU32::new(l.grant_burst.max(1))?;
    Some(GrantLimiter::new(per_minute, burst))
}

/// Settings of the background workers, resolved from config.
struct Workers {
    /// Time between reconciler passes, when it runs.
    reconciler: Option<Duration>,
    webhooks: Option<(WebhookSender, Duration)>,
    media: crate::workers::media::MediaPool,
}

fn workers(config: &Config) -> anyhow::Result<Workers> {
    let r = &config.reconciler;
    let reconciler = r.enabled.then(|| checked_duration(&r.every));
    let w = &config.webhooks;
    let webhooks = match (&w.url, &w.secret) {
        (Some(url), Some(secret)) => Some((
            WebhookSender::new(
                url.clone(),
                secret,
                checked_duration(&w.timeout),
                checked_duration(&w.retry_base),
            )?,
            checked_duration(&w.poll),
        )),
        _ => None,
    };
    Ok(Workers {
        reconciler,
        webhooks,
        media: crate::workers::media::MediaPool::from_config(&config.media)?,
    })
}

/// The store as both the broker and clients reach it.
struct StoreWiring {
    handle: Option<StoreHandle>,
    broker_endpoint: String,
    public_endpoint: String,
    access_key_id: String,
    secret: Secret,
    capabilities: Capabilities,
    /// The embedded store's event hook, bound to the state once it exists.
    events: Option<Arc<crate::adopt::StoreEvents>>,
    /// The embedded store's writes without HTTP, for streamed bodies.
    in_process: Option<latchkey_s3local::InProcess>,
}

/// `[server]`'s bounds on client connections, for the broker's listener
/// and the embedded store's alike.
fn connection_limits(config: &Config) -> crate::serve::Limits {
    crate::serve::Limits {
        header_read_timeout: checked_duration(&config.server.header_read_timeout),
        max_connections: config.server.max_connections as usize,
    }
}

async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what} (is another process using it? see --listen / --store-listen)"))
}

async fn wire_store(config: &Config, dev: &DevSecrets) -> anyhow::Result<StoreWiring> {
    let s = &config.store;
    match s.kind {
        StoreKind::Embedded => {
            let listener = bind(&s.listen, "embedded store").await?;
            let events = crate::adopt::StoreEvents::new();
            let store = LocalStore::open(
                LocalStoreConfig {
                    root: config.data_dir.join("store"),
                    bucket: s.bucket.clone(),
                    region: s.region.clone(),
                    access_key_id: dev.store_access_key_id.clone(),
                    secret_access_key: dev.store_secret_access_key.clone(),
                },
                s.notify
                    .then(|| events.clone() as Arc<dyn latchkey_s3local::ObjectEvents>),
            )
            .await
            .context("opening the embedded store")?;
            let in_process = store.in_process();
            let limits = connection_limits(config);
            let handle = store
                .with_connection_limits(latchkey_s3local::ConnectionLimits {
                    max_connections: limits.max_connections,
                    header_read_timeout: limits.header_read_timeout,
                })
                .serve(listener);
            let endpoint = handle.endpoint_url();
            Ok(StoreWiring {
                public_endpoint: s.public_url.clone().unwrap_or_else(|| endpoint.clone()),
                broker_endpoint: endpoint,
                handle: Some(handle),
                access_key_id: dev.store_access_key_id.clone(),
                secret: dev.store_secret_access_key.clone(),
                capabilities: s.capabilities.clone().unwrap_or(Capabilities::FULL),
                events: Some(events),
                in_process: Some(in_process),
            })
        }
        StoreKind::S3 => {
            let endpoint = s
                .endpoint
                .clone()
                .context("store.endpoint is required when store.kind = \"s3\"")?;
            let access_key_id = s
                .access_key_id
                .clone()
                .context("store.access_key_id is required when store.kind = \"s3\"")?;
            let secret = s
                .secret_access_key
                .clone()
                .context("store.secret_access_key is required when store.kind = \"s3\"")?;
            Ok(StoreWiring {
                handle: None,
                public_endpoint: s.public_url.clone().unwrap_or_else(|| endpoint.clone()),
                broker_endpoint: endpoint,
                access_key_id,
                secret,
                capabilities: crate::temporary_credentials::s3_capabilities(s),
                events: None,
                in_process: None,
            })
        }
    }
}

fn auth_config(config: &Config, dev: &DevSecrets) -> anyhow::Result<(AuthConfig, Option<Secret>)> {
    let a = &config.auth;
    let jwks = match &a.jwks_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JWKS", path.display()))?,
            )
        }
        None => None,
    };
    // Dev mode: nothing configured, so tokens are signed with the generated
    // secret that `latchkey token` also reads.
    let hs = match (&a.jwt_secret, &jwks) {
        (Some(s), _) => Some(s.clone()),
        (None, None) => Some(dev.jwt_secret.clone()),
        (None, Some(_)) => None,
    };
    let cfg = AuthConfig {
        hs256_secret: hs.clone(),
        jwks,
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        api_keys: a.api_keys.clone(),
    };
    Ok((cfg, hs))
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // The broker's listener, and the embedded store's when there is one.
        let listeners = if config.store.kind == StoreKind::Embedded {
            2
        } else {
            1
        };
        crate::fd_limit::prepare(config.server.max_connections, listeners);
        let dev = secrets::load_or_create(&config.data_dir)?;
        let profiles = config.profiles()?;
        let wiring = wire_store(&config, &dev).await?;
        let options = latchkey_ledger::OpenOptions {
            migrate: config.ledger.migrate,
            max_connections: config.ledger.max_connections.max(1),
        };
        let ledger = latchkey_ledger::connect_with(&config.ledger_url(), options)
            .await
            .context("opening the ledger")?;
        let s = &config.store;
        let store = S3Store::new(&S3StoreConfig {
            endpoint: wiring.broker_endpoint.clone(),
            region: s.region.clone(),
            bucket: s.bucket.clone(),
            path_style: s.path_style,
            access_key_id: wiring.access_key_id.clone(),
            secret_access_key: wiring.secret.clone(),
            capabilities: wiring.capabilities.clone(),
        })
        .with_timeout(checked_duration(&s.timeout));
        let store = match crate::temporary_credentials::issuer(
            s,
            &wiring.broker_endpoint,
            &wiring.access_key_id,
            &wiring.secret,
        ) {
            Some(issuer) => store.with_temporary_credentials(issuer),
            None => store,
        };
        let store = match wiring.in_process {
            Some(local) => {
                store.with_body_writer(Arc::new(crate::embedded_writes::EmbeddedWrites(local)))
            }
            None => store,
        };
        let endpoint = Endpoint::new(&wiring.public_endpoint, &s.bucket, &s.region, s.path_style)
            .context("store.public_url")?;
        let signer = Signer::new(
            Credentials::new(wiring.access_key_id.clone(), wiring.secret.expose()),
            &s.region,
        );
        let (auth_cfg, token_secret) = auth_config(&config, &dev)?;
        let auth = Authenticator::new(&auth_cfg)?;
        let limits = Limits {
            download_ttl: config.limits.download_ttl_duration()?,
            max_page: config.limits.max_page.max(1),
            json_body_bytes: config.limits.json_body.0 as usize,
            part_size: config.limits.part_size.0.max(5 * 1024 * 1024),
            proxy_single_put_max: config
                .limits
                .proxy_single_put
                .0
                .min(latchkey_api::MAX_SINGLE_PUT),
        };
        // Bound before the state is built: proxy grants carry the broker's
        // public URL, which defaults to the bound address.
        let listener = bind(&config.server.listen, "broker").await?;
        let broker_addr = listener.local_addr()?;
        let public_url = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{broker_addr}"));
        // One registry per Application: see latchkey_api::metrics.
        let metrics = latchkey_api::Metrics::new();
        let state = Arc::new(AppState {
            ledger: metrics.ledger(ledger),
            store: metrics.store(Arc::new(store)),
            signer,
            endpoint,
            public_url: public_url.clone(),
            profiles,
            default_profile: config.default_profile.clone(),
            auth,
            limits,
            metrics,
            events: EventSettings {
                token: config.events.token.clone(),
                subscribe_hosts: config.events.subscribe_hosts.clone(),
                bucket: config.store.bucket.clone(),
            },
            grant_limiter: grant_limiter(&config),
            tus: latchkey_api::broker::modes::tus::TusSettings::new(config.tus_buffer_dir()),
            // Dev mode (nothing configured to verify tokens): the demo page
            // may sign in as a dev user with the generated secret.
            uppy: latchkey_api::broker::uppy::UppySettings::new(
                &wiring.secret,
                (config.auth.jwt_secret.is_none() && config.auth.jwks_file.is_none())
                    .then(|| dev.jwt_secret.clone()),
            ),
        });
        if let Some(events) = &wiring.events {
            events.bind(&state);
        }
        let router = layers(
            latchkey_api::router(state.clone()),
            &crate::http::HttpPolicy {
                cors_origins: config.server.cors_origins.clone(),
                store_origin: wiring.public_endpoint.clone(),
            },
        )?
        // Idle, not total: the timer restarts with every chunk, so a long
        // upload that keeps sending is never cut off (src/serve.rs).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            checked_duration(&config.server.body_idle_timeout),
        ));
        Ok(Application {
            state,
            workers: workers(&config)?,
            holder: instance_id(&config.data_dir),
            reconciler: Arc::new(reconciler::Reconciler {
                grace: checked_duration(&config.reconciler.grace),
                orphan_grace: checked_duration(&config.reconciler.orphan_grace),
                cursor: Default::default(),
            }),
            listener,
            router,
            store: wiring.handle,
            broker_addr,
            public_url,
            store_public_url: wiring.public_endpoint,
            token_secret,
            limits: connection_limits(&config),
        })
    }

    pub fn broker_addr(&self) -> SocketAddr {
        self.broker_addr
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn store_url(&self) -> &str {
        &self.store_public_url
    }

    /// One reconciler pass now (`latchkey reconcile --once`), whatever the
    /// configured schedule.
    pub async fn reconcile_once(&self) -> anyhow::Result<reconciler::PassReport> {
        reconciler::pass(&self.state, &self.holder, &self.reconciler).await
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    /// The reconciler and the webhook worker run beside it.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let holder = self.holder.clone();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(every) = self.workers.reconciler {
            tasks.spawn(reconciler::run(
                self.state.clone(),
                holder,
                every,
                self.reconciler.clone(),
            ));
        }
        if self.state.grant_limiter.is_some() {
            let state = self.state.clone();
            tasks.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    if let Some(l) = &state.grant_limiter {
                        l.shrink();
                    }
                }
            });
        }
        tasks.spawn(crate::workers::media::run(
            self.state.clone(),
            self.workers.media,
        ));
        if let Some((sender, poll)) = self.workers.webhooks {
            tasks.spawn(webhooks::run(self.state.ledger.clone(), sender, poll));
        }
        let served = crate::serve::serve(
            self.listener,
            self.router,
            self.limits,
            self.state.metrics.clone(),
            shutdown,
        )
        .await
        .context("serving the broker");
        tasks.abort_all();
        if let Some(store) = self.store {
            store.shutdown().await;
        }
        served
    }
}
