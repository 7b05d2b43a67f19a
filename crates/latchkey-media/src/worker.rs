//! Isolation: untrusted files are decoded in a child process with an
//! address-space limit (`RLIMIT_AS`), a CPU-time limit (`RLIMIT_CPU`), no
//! core dumps, its own process group, and a wall-clock deadline after which
//! the whole group is killed. A decoder that crashes, loops or runs out of
//! memory fails its own file; the broker only sees a failed child.
//!
//! The child is the `latchkey` binary's hidden `media-worker` subcommand
//! ([`worker_main`]): a [`Job`] as JSON on stdin, outputs written into the
//! job's folder, one [`WorkerReply`] as JSON on stdout.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::pipeline::{Options, Processed, RejectCode, Rejection, process};

/// What the child is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The quarantined bytes, already downloaded by the parent.
    pub input: PathBuf,
    /// The content type the client declared.
    pub declared_type: String,
    /// An empty folder for the outputs.
    pub out_dir: PathBuf,
    pub options: Options,
}

/// What the child answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerReply {
    Processed(Processed),
    Rejected(Rejection),
}

/// The child side: reads a [`Job`] from stdin, prints a [`WorkerReply`].
/// Returns the process exit code (0 whenever a reply was printed, a
/// rejection included).
pub fn worker_main() -> i32 {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("media-worker: reading the job: {e}");
        return 2;
    }
    let job: Job = match serde_json::from_str(&input) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("media-worker: the job is not valid JSON: {e}");
            return 2;
        }
    };
    let reply = match std::fs::read(&job.input) {
        Ok(bytes) => match process(&bytes, &job.declared_type, &job.options, &job.out_dir) {
            Ok(p) => WorkerReply::Processed(p),
            Err(r) => WorkerReply::Rejected(r),
        },
        Err(e) => {
            eprintln!("media-worker: reading {}: {e}", job.input.display());
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &reply).is_ok() && out.flush().is_ok();
    if written { 0 } else { 2 }
}

/// Limits of one child.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The program and its arguments (`[latchkey, media-worker]`).
    pub command: Vec<String>,
    /// `RLIMIT_AS`, bytes of address space.
    pub memory_bytes: u64,
    /// `RLIMIT_CPU`, seconds.
    pub cpu_seconds: u64,
    /// Killed (with its whole process group) after this long.
    pub wall: Duration,
}

/// How a child run ended.
#[derive(Debug)]
pub struct RunReport {
    /// The child's answer, or a `decode_failed` rejection when it crashed,
    /// was killed, timed out or answered nonsense.
    pub reply: WorkerReply,
    /// Peak resident memory of the child (and waited-for grandchildren),
    /// KiB, as `getrusage` reports it.
    pub max_rss_kib: i64,
    /// The child's stderr, clipped, for the log.
    pub stderr: String,
}

/// Runs `job` in a limited child and waits for it (blocking: call it from
/// a blocking thread). `Err` only when the child could not be started.
pub fn run_isolated(iso: &Isolation, job: &Job) -> std::io::Result<RunReport> {
    let (program, args) = iso
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("the media worker command is empty"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mem, cpu) = (iso.memory_bytes, iso.cpu_seconds.max(1));
    // SAFETY: only async-signal-safe calls (setpgid, setrlimit) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let limit = |resource, value: u64| {
                let lim = libc::rlimit {
                    rlim_cur: value as libc::rlim_t,
                    rlim_max: value as libc::rlim_t,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            limit(libc::RLIMIT_AS, mem)?;
            limit(libc::RLIMIT_CPU, cpu)?;
            limit(libc::RLIMIT_CORE, 0)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let payload = serde_json::to_vec(job).map_err(std::io::Error::other)?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&payload);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(4 << 20).read_to_end(&mut buf);
        buf
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut buf);
        buf
    });

    let deadline = Instant::now() + iso.wall;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: waiting for our own child; the pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // SAFETY: signalling our child's own process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Grandchildren (libheif's decoder) share the group: none may outlive
    // the worker.
    // SAFETY: as above.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err).chars().take(2000).collect();
    let failed = |detail: String| {
        WorkerReply::Rejected(Rejection {
            code: RejectCode::DecodeFailed,
            detail,
        })
    };
    let reply = if timed_out {
        failed(format!("decoding took longer than {:?}", iso.wall))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let why = match sig {
            libc::SIGXCPU => "ran out of CPU time",
            libc::SIGABRT => "aborted (out of memory?)",
            libc::SIGSEGV | libc::SIGBUS => "crashed",
            _ => "was killed",
        };
        failed(format!("the decoder {why} (signal {sig})"))
    } else if libc::WEXITSTATUS(status) != 0 {
        failed(format!(
            "the decoder failed (exit {})",
            libc::WEXITSTATUS(status)
        ))
    } else {
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| failed(format!("the decoder answered nonsense: {e}")))
    };
    Ok(RunReport {
        reply,
        max_rss_kib: usage.ru_maxrss,
        stderr,
    })
}
