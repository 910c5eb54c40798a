//! Rate limits, checked in the **submit** step before anything is stored or queued
//! (submit → queue → …), and at sign-in. Keyed GCRA limiters (the `governor` crate) held in
//! memory: per account or token, or per client address when nobody is signed in. Over a
//! limit the request gets `429 Too Many Requests` with `Retry-After` and a sentence, and
//! nothing is stored. Limits are per `serve` process (several processes behind a balancer
//! each allow the full rate).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Why a request was refused, and when to come back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; retry in {retry_after_secs} s")]
pub struct Limited {
    /// Whole seconds, at least 1 (the `Retry-After` value).
    pub retry_after_secs: u64,
    pub reason: String,
}

/// The configured rates, per minute.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    pub submissions_per_minute: u32,
    pub addresses_per_minute: u32,
    pub logins_per_account_per_minute: u32,
    pub logins_per_address_per_minute: u32,
}

/// The limiters of one `serve` process.
pub struct Limits {
    rates: Rates,
    submissions: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<String>,
    login_account: DefaultKeyedRateLimiter<String>,
    login_address: DefaultKeyedRateLimiter<String>,
    /// Checks since the last clean-up of idle keys (memory stays bounded).
    checks: AtomicU32,
}

fn per_minute(n: u32) -> Quota {
    // Burst = the whole minute's allowance: a person may paste a full list at once.
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    pub fn new(rates: Rates) -> Limits {
        Limits {
            rates,
            submissions: RateLimiter::keyed(per_minute(rates.submissions_per_minute)),
            addresses: RateLimiter::keyed(per_minute(rates.addresses_per_minute)),
            login_account: RateLimiter::keyed(per_minute(rates.logins_per_account_per_minute)),
            login_address: RateLimiter::keyed(per_minute(rates.logins_per_address_per_minute)),
            checks: AtomicU32::new(0),
        }
    }

    pub fn rates(&self) -> Rates {
        self.rates
    }

    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            for l in [
                &self.submissions,
                &self.addresses,
                &self.login_account,
                &self.login_address,
            ] {
                l.retain_recent();
            }
        }
    }

    /// One submission of `addresses` addresses by `who` (a key from `auth::rate_key`).
    pub fn submission(&self, who: &str, addresses: usize) -> Result<(), Limited> {
        self.housekeeping();
        let key = who.to_string();
        if let Err(not_until) = self.submissions.check_key(&key) {
            return Err(limited(
                not_until.wait_time_from(DefaultClock::default().now()),
                format!(
                    "too many submissions: at most {} a minute",
                    self.rates.submissions_per_minute
                ),
            ));
        }
        let Some(n) = u32::try_from(addresses).ok().and_then(NonZeroU32::new) else {
            return Ok(());
        };
        let reason = format!(
            "too many addresses: at most {} a minute",
            self.rates.addresses_per_minute
        );
        match self.addresses.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(limited(
                not_until.wait_time_from(DefaultClock::default().now()),
                reason,
            )),
            // More than a whole minute's allowance in one go: it will never fit.
            Err(_) => Err(Limited {
                retry_after_secs: 60,
                reason: format!("{reason}; split the list"),
            }),
        }
    }

    /// One sign-in attempt for account `name` from `client`.
    pub fn login(&self, name: &str, client: Option<IpAddr>) -> Result<(), Limited> {
        self.housekeeping();
        let clock = DefaultClock::default();
        if let Err(n) = self.login_account.check_key(&name.to_lowercase()) {
            return Err(limited(
                n.wait_time_from(clock.now()),
                "too many sign-in attempts for this account".into(),
            ));
        }
        let addr = client.map(|a| a.to_string()).unwrap_or_default();
        if let Err(n) = self.login_address.check_key(&addr) {
            return Err(limited(
                n.wait_time_from(clock.now()),
                "too many sign-in attempts from this address".into(),
            ));
        }
        Ok(())
    }
}

fn limited(wait: Duration, reason: String) -> Limited {
    Limited {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(subs: u32, addrs: u32) -> Rates {
        Rates {
            submissions_per_minute: subs,
            addresses_per_minute: addrs,
            logins_per_account_per_minute: 2,
            logins_per_address_per_minute: 3,
        }
    }

    #[test]
    fn submissions_over_the_rate_are_refused_with_a_wait() {
        let l = Limits::new(rates(2, 1000));
        assert!(l.submission("a", 1).is_ok());
        assert!(l.submission("a", 1).is_ok());
        let e = l.submission("a", 1).unwrap_err();
        assert!(e.retry_after_secs >= 1 && e.retry_after_secs <= 60, "{e:?}");
        assert!(e.reason.contains("submissions"));
        // Another key has its own allowance.
        assert!(l.submission("b", 1).is_ok());
    }

    #[test]
    fn addresses_are_counted_and_oversize_lists_refused() {
        let l = Limits::new(rates(100, 10));
        assert!(l.submission("a", 8).is_ok());
        assert!(
            l.submission("a", 5)
                .unwrap_err()
                .reason
                .contains("addresses")
        );
        assert!(l.submission("b", 11).unwrap_err().reason.contains("split"));
    }

    #[test]
    fn sign_in_is_throttled_per_account_and_per_address() {
        let l = Limits::new(rates(1, 1));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.login("me", Some(ip)).is_ok());
        assert!(l.login("ME", Some(ip)).is_ok());
        assert!(
            l.login("me", Some(ip))
                .unwrap_err()
                .reason
                .contains("account")
        );
        assert!(l.login("other", Some(ip)).is_ok());
        assert!(
            l.login("third", Some(ip))
                .unwrap_err()
                .reason
                .contains("address")
        );
    }
}
