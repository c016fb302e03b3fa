//! Per-client token buckets: login and dashboard are rate limited (the
//! ADR's security points); over the limit a client gets 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at most by default.
pub const MAX_CLIENTS: usize = 10_000;

/// Whom a bucket belongs to: an IPv4 address, an IPv6 /64 (one host
/// usually holds a whole /64, so per-address buckets would be free to
/// multiply), or everyone the table had no room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    Addr(IpAddr),
    Overflow,
}

fn client(addr: IpAddr) -> Client {
    match addr {
        IpAddr::V4(_) => Client::Addr(addr),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Client::Addr(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                Client::Addr(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        },
    }
}

/// A token bucket per client, in a table of bounded size.
///
/// The table never resets a bucket an attacker drained: when it is full,
/// only buckets that have refilled completely (indistinguishable from a
/// new client) are dropped, and if none has, newcomers share one overflow
/// bucket. Spraying addresses therefore buys no extra attempts.
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    max_clients: usize,
    buckets: Mutex<HashMap<Client, (f64, Instant)>>,
}

impl RateLimiter {
    /// `burst` requests at once, refilled at `per_minute`.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self::with_capacity(burst, per_minute, MAX_CLIENTS)
    }

    /// The same, tracking at most `max_clients` clients.
    pub fn with_capacity(burst: u32, per_minute: u32, max_clients: usize) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            max_clients: max_clients.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        (tokens + now.duration_since(at).as_secs_f64() * self.per_second).min(self.burst)
    }

    /// `Ok` to proceed, or `Err(seconds)` to wait.
    pub fn check(&self, addr: IpAddr) -> Result<(), u64> {
        self.take(client(addr))
    }

    /// One bucket for everyone: a site-wide cap.
    pub fn check_global(&self) -> Result<(), u64> {
        self.take(Client::Overflow)
    }

    /// `Ok` when `addr` has a request left, without using it (a token
    /// check asks first, and [`check`](Self::check)s only a failure).
    pub fn peek(&self, addr: IpAddr) -> Result<(), u64> {
        self.take_n(client(addr), 0.0)
    }

    /// [`peek`](Self::peek) of the site-wide bucket.
    pub fn peek_global(&self) -> Result<(), u64> {
        self.take_n(Client::Overflow, 0.0)
    }

    fn take(&self, key: Client) -> Result<(), u64> {
        self.take_n(key, 1.0)
    }

    /// Needs one token in `key`'s bucket, and takes `n` (0 or 1) of it.
    fn take_n(&self, mut key: Client, n: f64) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= self.max_clients {
            // Forget only the buckets that are full again: nothing is
            // refilled that was not refilled already.
            buckets.retain(|k, (tokens, at)| {
                *k == Client::Overflow || self.refilled(*tokens, *at, now) < self.burst
            });
            if buckets.len() >= self.max_clients {
                key = Client::Overflow;
            }
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = self.refilled(*tokens, *at, now);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= n;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }

    /// The 429 response.
    pub fn too_many(retry_after: u64) -> rouille::Response {
        rouille::Response::text("Too many requests, slow down\n")
            .with_status_code(429)
            .with_unique_header("Retry-After", retry_after.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_per_client() {
        let l = RateLimiter::new(2, 60);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(l.check(a).is_ok());
        assert!(l.check(a).is_ok());
        let wait = l.check(a).unwrap_err();
        assert!((1..=2).contains(&wait));
        assert!(l.check(b).is_ok());
    }

    #[test]
    fn spraying_addresses_refills_nothing() {
        // Room for 3 clients, 1 attempt each, refilled at 1 a minute.
        let l = RateLimiter::with_capacity(1, 1, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(l.check(a).is_ok());
        assert!(l.check(a).is_err());
        // 1,000 new addresses: three get a table slot or the shared
        // overflow bucket, which drains at once; the drained ones are
        // never evicted, so `a` stays refused.
        let admitted = (0..1_000u32)
            .filter(|i| {
                l.check(IpAddr::from((0x0B00_0000 + i).to_be_bytes()))
                    .is_ok()
            })
            .count();
        assert!(admitted <= 3, "{admitted} sprayed addresses admitted");
        assert!(l.check(a).is_err(), "the drained bucket was refilled");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let l = RateLimiter::new(2, 60);
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check(x).is_ok());
        assert!(l.check(y).is_ok());
        assert!(l.check(x).is_err() && l.check(y).is_err());
        assert!(l.check(other).is_ok());
    }

    #[test]
    fn a_peek_uses_nothing() {
        let l = RateLimiter::new(1, 60);
        let a: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..10 {
            assert!(l.peek(a).is_ok());
        }
        assert!(l.check(a).is_ok());
        assert!(l.peek(a).is_err());
        assert!(l.peek_global().is_ok());
    }

    #[test]
    fn the_global_bucket_is_shared() {
        let l = RateLimiter::new(2, 60);
        assert!(l.check_global().is_ok());
        assert!(l.check_global().is_ok());
        assert!(l.check_global().is_err());
    }
}
