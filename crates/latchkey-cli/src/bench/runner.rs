//! Runs one timed phase: N tasks repeat an operation until the deadline, each
//! recording its latency; the phase's result is counts, rates and quantiles.

use std::future::Future;

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// What one phase measured. Rates are over the phase's wall-clock time.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// What was timed, e.g. `POST /v1/uploads`.
    pub label: String,
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed (any error, including non-2xx answers).
    pub errors: u64,
    /// The first error seen, to tell what went wrong (never a URL: they are
    /// capabilities).
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    /// Payload bytes moved by successful operations, per second.
    pub mib_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time the server process spent per successful operation during
    /// the phase (`--pid`; peer benches only), a cost that, unlike the
    /// rates, does not depend on how much CPU the load generator took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ms_per_op: Option<f64>,
    /// CPU time this load generator spent per successful operation: on a
    /// machine it shares with the server, what it takes the server cannot
    /// have, so a rate is read beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu_ms_per_op: Option<f64>,
}

/// How long an operation may still run after its phase's end before it is
/// abandoned (and counted as an error): a server that stops answering must
/// not hold the bench, and `scripts/bench`, forever. Generous, so a 1 GiB
/// upload on a slow disk still finishes.
const STRAGGLER_GRACE: Duration = Duration::from_secs(120);

/// Runs `op` on `connections` tasks until `duration` has passed (each task
/// runs at least once, and an operation already started finishes, within
/// [`STRAGGLER_GRACE`]) or `op` reports it has nothing left to do
/// (`Ok(None)`). `op(task)` returns the payload bytes it moved.
pub async fn phase<F, Fut>(label: &str, connections: usize, duration: Duration, op: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<u64>>> + Send,
{
    phase_with_grace(label, connections, duration, STRAGGLER_GRACE, op).await
}

async fn phase_with_grace<F, Fut>(
    label: &str,
    connections: usize,
    duration: Duration,
    grace: Duration,
    op: F,
) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<u64>>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + duration;
    let give_up = tokio::time::Instant::from_std(deadline + grace);
    let mut tasks = Vec::with_capacity(connections);
    for task in 0..connections {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            // Microseconds, 1 µs to 1 h, 3 significant digits.
            let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds");
            let (mut bytes, mut errors, mut first_error) = (0u64, 0u64, None);
            // Every task runs at least once, so a tiny duration still measures one op.
            loop {
                let t = Instant::now();
                let Ok(result) = tokio::time::timeout_at(give_up, op(task)).await else {
                    errors += 1;
                    first_error.get_or_insert_with(|| {
                        format!(
                            "an operation was still running {}s after the phase ended: abandoned",
                            grace.as_secs_f64()
                        )
                    });
                    break;
                };
                match result {
                    Ok(Some(n)) => {
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = hist.record(us.min(3_600_000_000));
                        bytes += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        // A failing server must not turn the bench into a busy loop.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            (hist, bytes, errors, first_error)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
    let (mut bytes, mut errors, mut first_error) = (0u64, 0u64, None);
    for task in tasks {
        match task.await {
            Ok((h, b, e, f)) => {
                let _ = hist.add(h);
                bytes += b;
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let ops = hist.len();
    let ms = |q: f64| {
        if ops == 0 {
            0.0
        } else {
            hist.value_at_quantile(q) as f64 / 1000.0
        }
    };
    Measured {
        label: label.to_owned(),
        ops,
        errors,
        first_error,
        elapsed_s: round3(elapsed),
        ops_per_s: round3(ops as f64 / elapsed),
        mib_per_s: round3(bytes as f64 / elapsed / (1024.0 * 1024.0)),
        p50_ms: round3(ms(0.5)),
        p99_ms: round3(ms(0.99)),
        max_ms: round3(if ops == 0 {
            0.0
        } else {
            hist.max() as f64 / 1000.0
        }),
        server_cpu_ms_per_op: None,
        generator_cpu_ms_per_op: None,
    }
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Runs a phase; adds the CPU time this process spent per successful
/// operation meanwhile and, given server processes, the time they spent
/// (together).
pub async fn with_cpu_per_op(
    pids: &[u32],
    phase: impl Future<Output = Measured>,
) -> Result<Measured> {
    let me = std::process::id();
    let (before, own_before) = (cpu_ticks_of(pids)?, cpu_ticks(me)?);
    let mut m = phase.await;
    let per_op =
        |ticks: u64| (m.ops > 0).then(|| round3(ticks as f64 * MS_PER_TICK / m.ops as f64));
    m.generator_cpu_ms_per_op = per_op(cpu_ticks(me)?.saturating_sub(own_before));
    if !pids.is_empty() {
        m.server_cpu_ms_per_op = per_op(cpu_ticks_of(pids)?.saturating_sub(before));
    }
    Ok(m)
}

fn cpu_ticks_of(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

/// `/proc/{pid}/stat` counts CPU time in USER_HZ ticks, which the kernel's
/// ABI fixes at 100 per second.
const MS_PER_TICK: f64 = 10.0;

/// User + system CPU ticks of every thread of process `pid` so far.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("--pid {pid}: no such process here (reading /proc)"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // fields are counted after its last `)`; utime and stime are 14 and 15.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc stat")
    };
    Ok(field(14)? + field(15)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_operation_that_never_ends_is_abandoned_after_the_grace() {
        let m = phase_with_grace(
            "stuck",
            2,
            Duration::from_millis(20),
            Duration::from_millis(50),
            |task| async move {
                if task == 0 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(Some(1))
            },
        )
        .await;
        assert_eq!(m.errors, 1, "{m:?}");
        assert!(
            m.first_error.as_deref().unwrap().contains("abandoned"),
            "{m:?}"
        );
        assert!(m.ops >= 1, "the other task went on: {m:?}");
    }

    #[test]
    fn cpu_time_is_read_for_this_process() {
        // Spin a little so that at least one tick is on the clock.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let ticks = cpu_ticks(std::process::id()).unwrap();
        assert!(ticks >= 1, "{ticks}");
        assert!(cpu_ticks(u32::MAX).is_err());
        // Several processes add up (here the same one twice; ticks only grow).
        assert!(cpu_ticks_of(&[std::process::id(); 2]).unwrap() >= 2 * ticks);
        assert_eq!(cpu_ticks_of(&[]).unwrap(), 0);
        assert!(cpu_ticks_of(&[std::process::id(), u32::MAX]).is_err());
    }
}
