//! The token buckets, one per client, in governor's keyed GCRA limiter, and the `RateLimit`
//! header fields of draft-ietf-httpapi-ratelimit-headers-11 that describe them.
//!
//! A bucket holds `burst` units and refills at `rps` units a second; a request takes its cost
//! ([`crate::access::cost`]) or is refused with how long until it would fit. governor keeps one
//! theoretical arrival time (8 bytes, plus the key) per client it has seen, so the map grows with
//! the distinct clients: [`Limiter::clean`], run every minute, forgets those whose bucket is full
//! again (indistinguishable from a client never seen) and gives the memory back.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// A valid API key, by its hash (so that a rotation that keeps a key keeps its bucket).
    Key(Arc<str>),
    /// A client without a key, by its address: an IPv4 address, or the /64 prefix of an IPv6
    /// one (one host usually has a whole /64, and could otherwise take a new bucket per address).
    Address(IpAddr),
}

impl Client {
    /// The bucket of the peer `address` (`None`: unknown, as for requests that do not come over a
    /// socket; they share one bucket).
    pub(crate) fn address(address: Option<IpAddr>) -> Self {
        let address = match address.map(|address| address.to_canonical()) {
            Some(IpAddr::V6(v6)) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            Some(v4) => v4,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        Self::Address(address)
    }
}

/// What the bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Taken: `remaining` units are left, and the bucket is full again in `reset` seconds.
    Allowed { remaining: u32, reset: u64 },
    /// Refused: the cost fits in `retry_after` seconds.
    Refused { retry_after: u64 },
}

type Keyed =
    RateLimiter<Client, DefaultKeyedStateStore<Client>, DefaultClock, StateInformationMiddleware>;

/// The keyed limiter with its quota.
#[derive(Debug)]
pub(crate) struct Limiter {
    buckets: Keyed,
    rps: NonZeroU32,
    burst: NonZeroU32,
}

impl Limiter {
    pub(crate) fn new(rps: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_second(rps).allow_burst(burst);
        Self {
            buckets: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            rps,
            burst,
        }
    }

    /// Takes `cost` units from `client`'s bucket. A cost above the burst could never be served:
    /// it takes the whole bucket instead.
    pub(crate) fn take(&self, client: &Client, cost: u32) -> Decision {
        let n = NonZeroU32::new(cost.min(self.burst.get())).unwrap_or(NonZeroU32::MIN);
        match self.buckets.check_key_n(client, n) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allowed {
                    remaining,
                    reset: self.seconds_for(self.burst.get().saturating_sub(remaining)),
                }
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.buckets.clock().now());
                Decision::Refused {
                    retry_after: ceil_secs(wait).max(1),
                }
            }
            // Cannot happen with `n` at most the burst; answered as a full wait if it does.
            Err(_) => Decision::Refused {
                retry_after: self.seconds_for(self.burst.get()),
            },
        }
    }

    /// Whole seconds (rounded up) for `units` to flow back in.
    fn seconds_for(&self, units: u32) -> u64 {
        u64::from(units).div_ceil(u64::from(self.rps.get()))
    }

    /// `RateLimit-Policy`: the bucket as a quota of `burst` units per the seconds it takes to
    /// refill, which is the sustained rate.
    pub(crate) fn policy_header(&self) -> String {
        format!(
            "\"default\";q={};w={}",
            self.burst,
            self.seconds_for(self.burst.get()).max(1)
        )
    }

    /// Forgets the clients whose bucket is full again, and returns the memory; the clients left.
    pub(crate) fn clean(&self) -> usize {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
        self.buckets.len()
    }
}

/// `RateLimit`: the units left and the seconds until the bucket is full (or, refused, until the
/// request would fit).
pub(crate) fn ratelimit_header(remaining: u32, reset: u64) -> String {
    format!("\"default\";r={remaining};t={reset}")
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: u32, burst: u32) -> Limiter {
        Limiter::new(
            NonZeroU32::new(rps).expect("rps"),
            NonZeroU32::new(burst).expect("burst"),
        )
    }

    #[test]
    fn headers_have_the_drafts_structured_form() {
        assert_eq!(limiter(100, 400).policy_header(), "\"default\";q=400;w=4");
        assert_eq!(limiter(3, 10).policy_header(), "\"default\";q=10;w=4");
        assert_eq!(limiter(1000, 10).policy_header(), "\"default\";q=10;w=1");
        assert_eq!(ratelimit_header(7, 2), "\"default\";r=7;t=2");
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn a_burst_drains_by_cost_then_refuses_until_it_refills() {
        let limiter = limiter(1, 10);
        let client = Client::address(Some([192, 0, 2, 1].into()));
        assert_eq!(
            limiter.take(&client, 4),
            Decision::Allowed {
                remaining: 6,
                reset: 4
            }
        );
        assert!(matches!(
            limiter.take(&client, 6),
            Decision::Allowed { remaining: 0, .. }
        ));
        let Decision::Refused { retry_after } = limiter.take(&client, 3) else {
            panic!("the bucket is empty");
        };
        assert!((2..=3).contains(&retry_after), "{retry_after}");
        // Another client has a bucket of its own; a cost above the burst takes the whole bucket.
        let other = Client::address(Some([192, 0, 2, 2].into()));
        assert!(matches!(
            limiter.take(&other, 500),
            Decision::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(limiter.take(&other, 1), Decision::Refused { .. }));
        assert_eq!(limiter.clean(), 2, "both buckets are still draining");
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_prefix() {
        let a = Client::address(Some("2001:db8::1".parse().expect("v6")));
        let b = Client::address(Some("2001:db8::ffff:2".parse().expect("v6")));
        let c = Client::address(Some("2001:db8:0:1::1".parse().expect("v6")));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Client::address(Some("::ffff:192.0.2.1".parse().expect("mapped")));
        assert_eq!(mapped, Client::address(Some([192, 0, 2, 1].into())));
    }
}
