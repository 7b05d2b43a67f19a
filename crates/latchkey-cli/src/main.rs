//! The `latchkey` binary: `serve` runs the whole system; `token`, `config`
//! help operate it; `upload`, `ls`, `get`, `rm` are the reference client.

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
    }
}

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
