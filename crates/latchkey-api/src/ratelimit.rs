//! A per-user limit on grant creation, so one client cannot flood the ledger
//! with reservations. It is per broker instance (a GCRA bucket in memory):
//! with N instances behind a balancer the effective limit is up to N times
//! the configured one.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use latchkey_domain::UserId;

pub struct GrantLimiter {
    limiter: DefaultKeyedRateLimiter<UserId>,
    clock: DefaultClock,
}

impl GrantLimiter {
    /// `per_minute` grants a minute sustained, bursts of up to `burst`.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` when the user must wait before asking again.
    pub fn check(&self, user: &UserId) -> Result<(), Duration> {
        self.limiter
            .check_key(user)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets users who have been idle long enough to be full again, so
    /// memory stays bounded by the number of recently active users.
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_user() {
        let l = GrantLimiter::new(NonZeroU32::new(60).unwrap(), NonZeroU32::new(3).unwrap());
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        for _ in 0..3 {
            assert!(l.check(&alice).is_ok());
        }
        let wait = l.check(&alice).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(l.check(&bob).is_ok(), "users have separate buckets");
    }
}
