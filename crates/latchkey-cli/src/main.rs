//! The `latchkey` binary: `serve` runs the whole system; `token`, `config`
//! help operate it; `upload`, `ls`, `get`, `rm` are the reference client.

mod bench;
mod client;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use latchkey_server::{Application, Config, Overrides};

#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Direct-to-S3 uploads that cannot be half-done"
)]
struct Cli {
    /// Configuration file (TOML). Also LATCHKEY_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory for the embedded store, SQLite ledger and generated secrets.
    #[arg(long, global = true, env = "LATCHKEY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (and, by default, the embedded S3 store).
    Serve {
        /// Address for the broker, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
        /// Address for the embedded S3 store, e.g. 127.0.0.1:9000.
        #[arg(long)]
        store_listen: Option<String>,
    },
    /// Print a token for a user, signed with this instance's HS256 secret.
    Token {
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 1h, 30m, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Operate on the object store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Inspect and retry webhook deliveries, or verify one as a receiver would.
    Webhooks {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Make a new API key for an app backend (prints the key and the line for the config).
    Apikey,
    /// Apply ledger migrations and exit (for deploys that migrate as a step).
    Migrate,
    /// Run the reconciler: commit uploads whose object arrived, expire the rest.
    Reconcile {
        /// One pass, then exit (the only mode for now; `serve` runs it continuously).
        #[arg(long)]
        once: bool,
    },
    /// Upload files: grant, direct PUT to the store, complete.
    Upload {
        #[command(flatten)]
        opts: client::ClientOpts,
        #[command(flatten)]
        args: client::UploadArgs,
    },
    /// List your uploads.
    Ls {
        #[command(flatten)]
        opts: client::ClientOpts,
        #[command(flatten)]
        args: client::LsArgs,
    },
    /// Download an upload through a presigned GET.
    Get {
        #[command(flatten)]
        opts: client::ClientOpts,
        #[command(flatten)]
        args: client::GetArgs,
    },
    /// Abort pending uploads or delete committed ones.
    Rm {
        #[command(flatten)]
        opts: client::ClientOpts,
        #[command(flatten)]
        args: client::RmArgs,
    },
    /// Load-test a latchkey on loopback: grants, full flows, proxy, store.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The photo pipeline's isolated worker: a job as JSON on stdin, the
    /// result as JSON on stdout. Started by `serve`, never by hand.
    #[command(hide = true)]
    MediaWorker,
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Events waiting for delivery (or, with --dead, dead-lettered ones), as JSON lines.
    List {
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Send a dead-lettered (or failing) event again now.
    Retry { id: i64 },
    /// Check a delivery's signature: exit 0 when valid. The body is read from stdin.
    Verify {
        /// The endpoint's `whsec_…` secret (or LATCHKEY_WEBHOOK_SECRET).
        #[arg(long, env = "LATCHKEY_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The `webhook-id` header.
        #[arg(long)]
        id: String,
        /// The `webhook-timestamp` header.
        #[arg(long)]
        timestamp: String,
        /// The `webhook-signature` header.
        #[arg(long)]
        signature: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Probe the configured store and print what it enforces.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load_config(
    cli: &Cli,
    listen: Option<String>,
    store_listen: Option<String>,
) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
        store_listen,
    };
    Ok(Config::load(cli.config.as_deref(), &overrides)?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn serve(config: Config) -> anyhow::Result<()> {
    latchkey_server::telemetry::init(&config.log);
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await?;
    let token = match &app.token_secret {
        Some(secret) => Some(latchkey_api::mint_token(
            secret,
            "dev",
            Duration::from_secs(24 * 3600),
            None,
            None,
        )?),
        None => None,
    };
    // The banner goes to stdout so it can be read even with logs filtered.
    // Write errors are ignored: a closed stdout must not stop the server.
    let mut banner = format!(
        "latchkey is running\n  broker:     {url}\n  S3 store:   {store}\n  data dir:   {dir}\n",
        url = app.public_url(),
        store = app.store_url(),
        dir = data_dir.display(),
    );
    if let Some(t) = token {
        banner.push_str(&format!(
            "  dev token (user \"dev\", 24h):\n    export LATCHKEY_TOKEN={t}\n  more tokens: latchkey token --user alice\n"
        ));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    app.run_until(shutdown_signal()).await
}

fn token(config: &Config, user: &str, ttl: &str) -> anyhow::Result<()> {
    let ttl = latchkey_domain::parse_duration(ttl)?;
    let secret = match &config.auth.jwt_secret {
        Some(s) => s.clone(),
        None if config.auth.jwks_file.is_some() => {
            anyhow::bail!(
                "this instance verifies tokens with a JWKS; tokens come from your identity provider"
            )
        }
        None => latchkey_server::secrets::load_or_create(&config.data_dir)?.jwt_secret,
    };
    let t = latchkey_api::mint_token(
        &secret,
        user,
        ttl,
        config.auth.issuer.as_deref(),
        config.auth.audience.as_deref(),
    )?;
    println!("{t}");
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::MediaWorker => std::process::exit(latchkey_media::worker_main()),
        Command::Serve {
            listen,
            store_listen,
        } => {
            let config = load_config(&cli, listen.clone(), store_listen.clone())?;
            serve(config).await
        }
        Command::Token { user, ttl } => token(&load_config(&cli, None, None)?, user, ttl),
        Command::Config => {
            let config = load_config(&cli, None, None)?;
            let effective = config.effective()?;
            print!(
                "{}",
                toml::to_string_pretty(&effective).context("rendering the configuration")?
            );
            Ok(())
        }
        Command::Store {
            command: StoreCommand::Check { json },
        } => {
            let config = load_config(&cli, None, None)?;
            let report = latchkey_server::store_check(&config).await?;
            if *json {
                println!("{:#}", report.to_json());
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Webhooks { command } => webhooks(&cli, command).await,
        Command::Apikey => {
            let (key, entry) = latchkey_server::secrets::new_api_key();
            println!("API key (give it to your backend; it is not stored anywhere):\n  {key}");
            println!("add to latchkey.toml:\n  [auth]\n  api_keys = [\"{entry}\"]");
            Ok(())
        }
        Command::Migrate => {
            let config = load_config(&cli, None, None)?;
            latchkey_server::telemetry::init(&config.log);
            latchkey_ledger::migrate(&config.ledger_url()).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Reconcile { once } => {
            if !once {
                anyhow::bail!("use --once (latchkey serve runs the reconciler continuously)");
            }
            let mut config = load_config(&cli, None, None)?;
            latchkey_server::telemetry::init(&config.log);
            // A one-off pass needs no listening broker; the embedded store
            // still has to serve for the broker's own HEAD calls.
            config.server.listen = "127.0.0.1:0".into();
            let app = Application::build(config).await?;
            let r = app.reconcile_once().await?;
            println!(
                "{}",
                serde_json::json!({
                    "ran": r.ran,
                    "committed": r.committed,
                    "expired": r.expired,
                    "deferred": r.deferred,
                    "unattached": r.unattached,
                })
            );
            Ok(())
        }
        Command::Upload { opts, args } => client::upload(opts, args).await,
        Command::Ls { opts, args } => client::ls(opts, args).await,
        Command::Get { opts, args } => client::get(opts, args).await,
        Command::Rm { opts, args } => client::rm(opts, args).await,
        Command::Bench { command } => bench::run(command).await,
    }
}

fn event_json(e: &latchkey_ledger::OutboxEvent) -> serde_json::Value {
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    serde_json::json!({
        "id": e.id,
        "upload_id": e.upload_id.to_string(),
        "type": e.event_type,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "created_at": rfc(e.created_at),
        "next_attempt_at": rfc(e.next_attempt_at),
        "dead_at": e.dead_at.and_then(rfc),
    })
}

async fn webhooks(cli: &Cli, command: &WebhookCommand) -> anyhow::Result<()> {
    if let WebhookCommand::Verify {
        secret,
        id,
        timestamp,
        signature,
    } = command
    {
        let mut body = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut body)
            .context("reading the body from stdin")?;
        let secret = latchkey_domain::Secret::new(secret.clone());
        let now = time::OffsetDateTime::now_utc();
        latchkey_server::workers::webhooks::verify(&secret, id, timestamp, &body, signature, now)?;
        println!("valid");
        return Ok(());
    }
    let config = load_config(cli, None, None)?;
    let options = latchkey_ledger::OpenOptions {
        migrate: false,
        ..Default::default()
    };
    let ledger = latchkey_ledger::connect_with(&config.ledger_url(), options).await?;
    match command {
        WebhookCommand::List { dead, limit } => {
            let events = if *dead {
                ledger.outbox_dead(*limit).await?
            } else {
                ledger.outbox_pending(*limit).await?
            };
            for e in &events {
                println!("{}", event_json(e));
            }
        }
        WebhookCommand::Retry { id } => {
            let now = time::OffsetDateTime::now_utc();
            ledger
                .outbox_failed(*id, Some(now), "retried by an operator", now)
                .await?;
            println!("event {id} will be sent again");
        }
        WebhookCommand::Verify { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// mimalloc instead of glibc malloc: the grant path allocates many small
/// short-lived values on two runtime threads, where glibc's arena locks and
/// consolidation took ~20% of a grant's CPU in `perf` (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            ExitCode::FAILURE
        }
    }
}
