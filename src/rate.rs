//! Token-bucket arithmetic for request budgets (pure): shared by the HTTP client's
//! in-process buckets and the store's shared ones, so both count the same way.

use std::time::Duration;

/// One step of a token bucket: the tokens left after taking one at `now_ms`, given the
/// bucket held `tokens` at `updated_ms` and refills at `per_second` up to `burst`. A
/// negative result is a debt the caller waits off (see [`wait_for`]).
pub fn take(tokens: f64, updated_ms: i64, now_ms: i64, per_second: f64, burst: u32) -> f64 {
    let elapsed = (now_ms - updated_ms).max(0) as f64 / 1000.0;
    (tokens + elapsed * per_second).min(f64::from(burst)) - 1.0
}

/// How long a bucket left at `tokens` makes its caller wait.
pub fn wait_for(tokens: f64, per_second: f64) -> Duration {
    if tokens >= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(-tokens / per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_arithmetic() {
        // Full bucket: take one.
        assert_eq!(take(3.0, 0, 0, 2.0, 3), 2.0);
        // Refill is capped at the burst.
        assert_eq!(take(0.0, 0, 10_000, 2.0, 3), 2.0);
        // Half a second refills one token at 2/s.
        assert_eq!(take(-1.0, 1_000, 1_500, 2.0, 3), -1.0);
        // A clock that went backwards refills nothing.
        assert_eq!(take(1.0, 5_000, 4_000, 2.0, 3), 0.0);
        assert_eq!(wait_for(-1.0, 2.0), Duration::from_millis(500));
        assert!(wait_for(0.5, 2.0).is_zero());
    }
}
