//! `latchkey bench`: a load generator for a latchkey on this machine.
//!
//! Every subcommand times one thing and, where there is one, the baseline it
//! should be compared with, in the same run (absolute numbers on a shared
//! machine are noise; ratios are not):
//!
//! - `grants`: `POST /v1/uploads` (token check, profile, ledger insert, presign);
//! - `flow`: create → upload → complete in one mode, against bare presigned
//!   PUTs of the same size to the same store (grants made before the clock);
//! - `proxy`: large bodies through the broker, against a direct presigned PUT
//!   (each including its create and commit);
//! - `store`: presigned PUTs and GETs against the store alone;
//! - `http`, `uppy`, `tus` (`peers.rs`): wire contracts other servers speak
//!   too (any URL, Companion's S3 routes, tus 1.0), so that latchkey and its
//!   peers (Uppy Companion, `@tus/server`) are timed by the same generator.
//!
//! It only talks to loopback (the server and every URL it grants), runs for a
//! bounded time, and never prints a token or a presigned URL. The server
//! should allow the load: `[limits] grants_per_minute = 0`, no quotas.

mod api;
mod peers;
mod runner;
mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;

use api::{Payload, Target};
use runner::{Measured, phase, round3, with_cpu_per_op};

/// Longest phase the bench will run: it is a tool for a developer's machine,
/// not a soak test.
const MAX_DURATION: Duration = Duration::from_secs(600);

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Grant throughput: POST /v1/uploads at N connections.
    Grants {
        #[command(flatten)]
        common: Common,
        /// Mode to ask for.
        #[arg(long, default_value = "put")]
        mode: String,
        /// Declared size of each upload.
        #[arg(long, default_value = "200KiB")]
        size: String,
    },
    /// Full create → upload → complete, against bare PUTs to the same store.
    Flow {
        #[command(flatten)]
        common: Common,
        /// put, post, headers, multipart or proxy.
        #[arg(long, default_value = "put")]
        mode: String,
        #[arg(long, default_value = "200KiB")]
        size: String,
        /// Skip the bare-PUT baseline (its grants stay pending until they
        /// expire), e.g. for `scripts/soak`, which checks that none is left.
        #[arg(long)]
        no_baseline: bool,
    },
    /// Large uploads through the broker, against direct presigned PUTs.
    Proxy {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "64MiB")]
        size: String,
    },
    /// Presigned PUT and GET throughput against the store.
    Store {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "1MiB")]
        size: String,
        /// Grants made before the PUT phase (the phase stops early if they run out).
        #[arg(long, default_value_t = 512)]
        objects: usize,
    },
    /// Any request to one URL, repeated (e.g. a peer's bare route).
    Http {
        #[command(flatten)]
        peer: peers::Peer,
        /// The URL, on loopback.
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request body (sent as is).
        #[arg(long)]
        body: Option<String>,
    },
    /// Uppy's Companion S3 routes: `GET /s3/params`, then sign-part
    /// (`GET /s3/multipart/{uploadId}/{n}`) on one multipart upload.
    Uppy {
        #[command(flatten)]
        peer: peers::Peer,
        /// Where the `/s3/…` routes hang off: Companion's base URL, or
        /// latchkey's `companion_url` from `POST /v1/uppy-token`.
        #[arg(long)]
        endpoint: String,
        /// `metadata[size]` of each `/s3/params` file.
        #[arg(long, default_value = "200KiB")]
        size: String,
        /// `metadata[size]` of the multipart upload whose parts are signed.
        #[arg(long, default_value = "64MiB")]
        multipart_size: String,
    },
    /// tus 1.0 uploads: creation POST, then PATCHes of `--chunk` bytes.
    Tus {
        #[command(flatten)]
        peer: peers::Peer,
        /// The tus creation URL (latchkey: `{server}/tus/`).
        #[arg(long)]
        endpoint: String,
        #[arg(long, default_value = "64MiB")]
        size: String,
        /// Bytes per PATCH (default: the whole upload in one).
        #[arg(long)]
        chunk: Option<String>,
        /// `Upload-Metadata` pairs, `key=value` (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
}

/// How hard and how long: shared by every subcommand.
#[derive(Clone, clap::Args)]
pub struct Load {
    /// Concurrent connections (tasks).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long each timed phase runs, e.g. 10s (at most 10m).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// A server process on this machine (repeatable: e.g. a peer and the
    /// store it writes to): each phase then also reports the CPU time they
    /// spent per operation, together (Linux `/proc`).
    #[arg(long)]
    pid: Vec<u32>,
}

impl Load {
    /// The validated connection count and phase duration.
    fn checked(&self) -> Result<(usize, Duration)> {
        let duration = parse_duration(&self.duration)?;
        if duration.is_zero() || duration > MAX_DURATION {
            bail!("--duration must be between 1ms and 10m");
        }
        if self.connections == 0 || self.connections > 4096 {
            bail!("--connections must be between 1 and 4096");
        }
        Ok((self.connections, duration))
    }
}

#[derive(Clone, clap::Args)]
pub struct Common {
    /// The broker, on loopback.
    #[arg(long, env = "LATCHKEY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Bearer token (`latchkey token --user bench`).
    #[arg(long, env = "LATCHKEY_TOKEN", hide_env_values = true)]
    token: String,
    /// Profile the uploads are made under.
    #[arg(long, default_value = "file")]
    profile: String,
    #[command(flatten)]
    load: Load,
}

/// What a subcommand prints: what it measured, and against what.
#[derive(Serialize)]
struct Report {
    bench: &'static str,
    server: String,
    connections: usize,
    duration_s: f64,
    size_bytes: Option<u64>,
    mode: Option<String>,
    measured: Vec<Measured>,
    /// Ratios between phases, e.g. `flow/bare_put` (ops or MiB per second).
    ratios: serde_json::Map<String, Value>,
}

pub async fn run(command: &BenchCommand) -> Result<()> {
    let (load, report) = match command {
        BenchCommand::Grants { common, mode, size } => {
            (&common.load, grants(common, mode, size).await?)
        }
        BenchCommand::Flow {
            common,
            mode,
            size,
            no_baseline,
        } => (&common.load, flow(common, mode, size, *no_baseline).await?),
        BenchCommand::Proxy { common, size } => (&common.load, proxy(common, size).await?),
        BenchCommand::Store {
            common,
            size,
            objects,
        } => (&common.load, store(common, size, *objects).await?),
        BenchCommand::Http {
            peer,
            url,
            method,
            body,
        } => (
            &peer.load,
            peers::http(peer, url, method, body.as_deref()).await?,
        ),
        BenchCommand::Uppy {
            peer,
            endpoint,
            size,
            multipart_size,
        } => (
            &peer.load,
            peers::uppy(
                peer,
                endpoint,
                parse_size(size)?,
                parse_size(multipart_size)?,
            )
            .await?,
        ),
        BenchCommand::Tus {
            peer,
            endpoint,
            size,
            chunk,
            metadata,
        } => {
            let size = parse_size(size)?;
            let chunk = chunk.as_deref().map(parse_size).transpose()?;
            (
                &peer.load,
                peers::tus(peer, endpoint, size, chunk, metadata).await?,
            )
        }
    };
    if load.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

struct Setup {
    target: Target,
    connections: usize,
    duration: Duration,
    pids: Vec<u32>,
}

fn setup(common: &Common) -> Result<Setup> {
    let (connections, duration) = common.load.checked()?;
    let target = Target::new(
        &common.server,
        common.token.clone(),
        common.profile.clone(),
        connections,
    )?;
    Ok(Setup {
        target,
        connections,
        duration,
        pids: common.load.pid.clone(),
    })
}

fn report(
    bench: &'static str,
    common: &Common,
    s: &Setup,
    size: Option<u64>,
    mode: Option<&str>,
) -> Report {
    Report {
        bench,
        server: common.server.clone(),
        connections: s.connections,
        duration_s: s.duration.as_secs_f64(),
        size_bytes: size,
        mode: mode.map(str::to_owned),
        measured: Vec::new(),
        ratios: serde_json::Map::new(),
    }
}

fn ratio(r: &mut Report, name: &str, num: f64, den: f64) {
    let v = if den > 0.0 {
        Value::from(round3(num / den))
    } else {
        Value::Null
    };
    r.ratios.insert(name.to_owned(), v);
}

async fn grants(common: &Common, mode: &str, size: &str) -> Result<Report> {
    let s = setup(common)?;
    // Only the declared size and digest matter: nothing is uploaded.
    let declared = parse_size(size)?;
    let create = s
        .target
        .create_request(mode, declared, &hex::encode([7u8; 32]))?;
    let conns = wire::Conns::new(s.connections);
    let timed = phase("POST /v1/uploads", s.connections, s.duration, move |task| {
        let (conns, create) = (conns.clone(), create.clone());
        async move {
            let body = conns
                .send(task, &create)
                .await
                .context("POST /v1/uploads")?;
            api::check_created(&body)?;
            Ok(Some(0))
        }
    });
    let m = with_cpu_per_op(&s.pids, timed).await?;
    let mut r = report("grants", common, &s, Some(declared), Some(mode));
    r.measured.push(m);
    Ok(r)
}

async fn flow(common: &Common, mode: &str, size: &str, no_baseline: bool) -> Result<Report> {
    let s = setup(common)?;
    let payload = Payload::new(parse_size(size)?);
    let half = s.duration;

    let (target, p, mode_owned) = (s.target.clone(), payload.clone(), mode.to_owned());
    let flow = with_cpu_per_op(
        &s.pids,
        phase(
            &format!("create → {mode} upload → complete"),
            s.connections,
            half,
            move |_| {
                let (target, p, mode) = (target.clone(), p.clone(), mode_owned.clone());
                async move {
                    let created = target.create(&mode, &p).await?;
                    let row = target.upload_and_complete(&created, &p).await?;
                    let status = row["status"].as_str().unwrap_or_default();
                    if status != "committed" && status != "processing" {
                        bail!("upload ended {status}");
                    }
                    Ok(Some(p.len()))
                }
            },
        ),
    )
    .await?;
    if no_baseline {
        let mut r = report("flow", common, &s, Some(payload.len()), Some(mode));
        r.measured.push(flow);
        return Ok(r);
    }

    // The baseline: the same PUTs with grants made before the clock starts,
    // enough for the baseline to run at up to 3× the flow's rate.
    let wanted = ((flow.ops as f64 * 3.0) as usize).clamp(s.connections * 2, 20_000);
    let grants = pre_grants(&s.target, &payload, wanted).await?;
    let bare = bare_puts(&s, grants, &payload).await?;

    let mut r = report("flow", common, &s, Some(payload.len()), Some(mode));
    ratio(&mut r, "flow/bare_put", flow.ops_per_s, bare.ops_per_s);
    r.measured.push(flow);
    r.measured.push(bare);
    Ok(r)
}

async fn proxy(common: &Common, size: &str) -> Result<Report> {
    let s = setup(common)?;
    let payload = Payload::new(parse_size(size)?);
    let mut measured = Vec::new();
    for (mode, label) in [
        ("proxy", "create → PUT through the broker (commits)"),
        ("put", "create → presigned PUT to the store → complete"),
    ] {
        let (target, p) = (s.target.clone(), payload.clone());
        measured.push(
            with_cpu_per_op(
                &s.pids,
                phase(label, s.connections, s.duration, move |_| {
                    let (target, p) = (target.clone(), p.clone());
                    async move {
                        let created = target.create(mode, &p).await?;
                        target.upload_and_complete(&created, &p).await?;
                        Ok(Some(p.len()))
                    }
                }),
            )
            .await?,
        );
    }
    let mut r = report("proxy", common, &s, Some(payload.len()), Some("proxy"));
    ratio(
        &mut r,
        "proxy/direct",
        measured[0].mib_per_s,
        measured[1].mib_per_s,
    );
    r.measured = measured;
    Ok(r)
}

async fn store(common: &Common, size: &str, objects: usize) -> Result<Report> {
    let s = setup(common)?;
    let payload = Payload::new(parse_size(size)?);
    let grants = pre_grants(&s.target, &payload, objects.max(s.connections)).await?;
    let ids: Vec<String> = grants
        .iter()
        .filter_map(|g| g["id"].as_str().map(str::to_owned))
        .collect();
    let put = bare_puts(&s, grants, &payload).await?;

    // GETs cycle over the uploaded objects (committed, by the store's
    // notification or by this complete), through their presigned GET URLs.
    let mut urls = Vec::new();
    for id in ids.iter().take(put.ops as usize).take(s.connections * 4) {
        let _ = s.target.complete(id, None).await;
        if let Ok(url) = s.target.download_url(id).await {
            urls.push(url);
        }
    }
    if urls.is_empty() {
        bail!(
            "no object to GET: the PUT phase stored nothing ({})",
            put.first_error.clone().unwrap_or_default()
        );
    }
    let urls = Arc::new(urls);
    let next = Arc::new(AtomicUsize::new(0));
    let target = s.target.clone();
    let get = with_cpu_per_op(
        &s.pids,
        phase(
            "presigned GET from the store",
            s.connections,
            s.duration,
            move |_| {
                let (target, urls, next) = (target.clone(), urls.clone(), next.clone());
                async move {
                    let url = &urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()];
                    Ok(Some(target.get_bytes(url).await?))
                }
            },
        ),
    )
    .await?;
    let mut r = report("store", common, &s, Some(payload.len()), None);
    ratio(&mut r, "get/put", get.mib_per_s, put.mib_per_s);
    r.measured.push(put);
    r.measured.push(get);
    Ok(r)
}

/// `n` `put` grants, made before any clock starts.
async fn pre_grants(target: &Target, payload: &Payload, n: usize) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(n);
    let mut batch = Vec::new();
    for i in 0..n {
        let (t, p) = (target.clone(), payload.clone());
        batch.push(tokio::spawn(async move { t.create("put", &p).await }));
        if batch.len() == 32 || i + 1 == n {
            for task in batch.drain(..) {
                out.push(task.await.context("grant task")??);
            }
        }
    }
    Ok(out)
}

/// Presigned PUTs of `payload`, one per grant, until the grants or the time run out.
async fn bare_puts(s: &Setup, grants: Vec<Value>, payload: &Payload) -> Result<Measured> {
    let grants = Arc::new(grants);
    let next = Arc::new(AtomicUsize::new(0));
    let (target, p) = (s.target.clone(), payload.clone());
    let timed = phase(
        "bare presigned PUT to the store",
        s.connections,
        s.duration,
        move |_| {
            let (target, p, grants, next) =
                (target.clone(), p.clone(), grants.clone(), next.clone());
            async move {
                let Some(created) = grants.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok(None);
                };
                target.upload_only(created, &p).await?;
                Ok(Some(p.len()))
            }
        },
    );
    with_cpu_per_op(&s.pids, timed).await
}

fn print_text(r: &Report) {
    println!(
        "latchkey bench {} against {} ({} connections, {:.1}s per phase{}{})",
        r.bench,
        r.server,
        r.connections,
        r.duration_s,
        r.size_bytes
            .map(|b| format!(", {b} bytes each"))
            .unwrap_or_default(),
        r.mode
            .as_deref()
            .map(|m| format!(", mode {m}"))
            .unwrap_or_default(),
    );
    for m in &r.measured {
        println!(
            "  {:<48} {:>9.1} ops/s {:>9.1} MiB/s  p50 {:>8.3} ms  p99 {:>8.3} ms  ({} ok, {} errors in {:.2}s)",
            m.label, m.ops_per_s, m.mib_per_s, m.p50_ms, m.p99_ms, m.ops, m.errors, m.elapsed_s
        );
        if let Some(cpu) = m.server_cpu_ms_per_op {
            println!("    server CPU: {cpu:.3} ms per operation");
        }
        if let Some(cpu) = m.generator_cpu_ms_per_op {
            println!("    this generator's CPU: {cpu:.3} ms per operation");
        }
        if let Some(e) = &m.first_error {
            println!("    first error: {e}");
        }
    }
    for (name, v) in &r.ratios {
        println!("  ratio {name}: {v}");
    }
}

/// Refuses anything but loopback: this is a load generator, and pointing it
/// at someone else's server is an attack, not a benchmark.
pub fn ensure_loopback(url: &Url) -> Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        bail!("only http(s) URLs can be benchmarked");
    }
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "latchkey bench only targets loopback (127.0.0.0/8, ::1, localhost), not {}",
            url.host_str().unwrap_or("(no host)")
        );
    }
    Ok(())
}

fn parse_duration(s: &str) -> Result<Duration> {
    latchkey_domain::parse_duration(s).map_err(|e| anyhow::anyhow!("bad duration {s:?}: {e}"))
}

fn parse_size(s: &str) -> Result<u64> {
    latchkey_domain::ByteSize::parse(s)
        .map(|b| b.0)
        .map_err(|e| anyhow::anyhow!("bad size {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9/",
            "http://[::1]:9000/x",
            "http://localhost:1",
        ] {
            assert!(ensure_loopback(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/",
            "http://example.com/",
            "http://[::2]/",
            "http://0.0.0.0/",
            "ftp://127.0.0.1/",
        ] {
            assert!(ensure_loopback(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("fast").is_err());
    }
}
