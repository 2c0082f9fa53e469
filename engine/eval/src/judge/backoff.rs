//! How long to wait before retrying a judge request: exponential backoff with full jitter,
//! or what the server asked for in `Retry-After`.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
/// Jitter"): retry k waits a uniform time in `[0, min(cap, base · 2^k)]`, which spreads
/// concurrent clients apart instead of having them retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Ceiling of the first retry's wait.
    pub base: Duration,
    /// Largest ceiling any retry's wait can have.
    pub cap: Duration,
    /// Largest wait a server's `Retry-After` can impose (a misbehaving server cannot stall a run).
    pub retry_after_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (0 for the first retry). A server's `Retry-After`
    /// wins over the jittered wait, capped at `retry_after_cap`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.retry_after_cap);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.cap);
        if ceiling.is_zero() {
            return ceiling;
        }
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }
}

/// A `Retry-After` header's wait: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, a date in the past meaning no wait). `None` when the
/// value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Some servers send fractional seconds though RFC 9110 asks for an integer.
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}
