//! The open-file limit. Every client connection is a file descriptor, and
//! the usual soft limit (1024) is far below `[server] max_connections`
//! (10 000 by default, on the broker's listener and again on the embedded
//! store's). Past it, `accept` fails with EMFILE instead of the listener
//! holding connections in the backlog as `max_connections` intends. So, as
//! most servers do, the soft limit is raised toward what the configuration
//! needs (never past the hard limit, which only root can lift), and a limit
//! still too low is said once at startup instead of surfacing under load.

/// Descriptors kept for everything but client connections: the ledger's
/// and the store index's SQLite files, bodies being written, the media
/// workers' pipes, outgoing connections to the store and webhook receivers.
const RESERVE: u64 = 1024;

/// The limit as found and as left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now.
    pub soft: u64,
    pub hard: u64,
}

/// How many descriptors `listeners` listeners of `max_connections` each
/// may need at once.
pub fn needed(max_connections: u32, listeners: u32) -> u64 {
    u64::from(max_connections) * u64::from(listeners) + RESERVE
}

fn get() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim)
}

/// Raises the soft RLIMIT_NOFILE to `wanted`, or to the hard limit if that
/// is lower; never lowers it.
pub fn raise_toward(wanted: u64) -> std::io::Result<FdLimit> {
    let lim = get()?;
    let (was, hard) = (lim.rlim_cur, lim.rlim_max);
    let target = wanted.min(hard);
    if target <= was {
        return Ok(FdLimit {
            was,
            soft: was,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct; the hard limit is left as it is.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FdLimit {
        was,
        soft: get()?.rlim_cur,
        hard,
    })
}

/// Raises the limit for `listeners` listeners of `max_connections` and
/// logs what happened: info when raised, a warning when still too low.
pub fn prepare(max_connections: u32, listeners: u32) {
    let wanted = needed(max_connections, listeners);
    match raise_toward(wanted) {
        Ok(l) if l.soft < wanted => tracing::warn!(
            limit = l.soft,
            hard_limit = l.hard,
            needed = wanted,
            max_connections,
            "the open-file limit is below what [server] max_connections needs: \
             at the limit new connections fail instead of waiting; raise `ulimit -n` \
             (the hard limit) or lower max_connections"
        ),
        Ok(l) if l.soft > l.was => {
            tracing::info!(from = l.was, to = l.soft, "raised the open-file limit");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(%err, needed = wanted, "could not raise the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_descriptor_per_connection_per_listener_plus_a_reserve() {
        assert_eq!(needed(10_000, 2), 21_024);
        assert_eq!(needed(0, 1), RESERVE);
    }

    #[test]
    fn raises_the_soft_limit_up_to_the_hard_one_and_never_lowers_it() {
        let before = get().unwrap();
        // Asking for less than the current soft limit changes nothing.
        let same = raise_toward(before.rlim_cur.saturating_sub(1)).unwrap();
        assert_eq!(same.soft, before.rlim_cur);
        assert_eq!(get().unwrap().rlim_cur, before.rlim_cur);
        if before.rlim_cur < before.rlim_max {
            // One more than now is granted (the hard limit allows it).
            let up = raise_toward(before.rlim_cur + 1).unwrap();
            assert_eq!(up.was, before.rlim_cur);
            assert_eq!(up.soft, before.rlim_cur + 1);
            assert_eq!(get().unwrap().rlim_cur, before.rlim_cur + 1);
        }
        // Asking past the hard limit stops at it (or, where the hard limit
        // is unlimited, at what was asked).
        let wanted = before.rlim_max.min(1 << 16);
        let top = raise_toward(wanted).unwrap();
        assert_eq!(top.hard, before.rlim_max);
        assert!(top.soft <= top.hard, "{top:?}");
        assert_eq!(get().unwrap().rlim_max, before.rlim_max, "hard limit kept");
    }
}
