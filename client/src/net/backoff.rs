//! Reconnect delays: exponential with "equal jitter" (half fixed, half random), so a server
//! restart is not met by every client at the same instant, and no client waits more than
//! the cap.

/// The first retry waits about this long.
pub const BASE_MS: u64 = 500;
/// No retry waits longer.
pub const CAP_MS: u64 = 15_000;

/// The delay before retry number `attempt` (0 for the first), with `random` in `[0, 1)`.
pub fn delay_ms(attempt: u32, random: f64) -> u64 {
    let exp = BASE_MS.saturating_mul(1u64 << attempt.min(20)).min(CAP_MS);
    let half = exp / 2;
    half + (half as f64 * random.clamp(0.0, 1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        assert_eq!(delay_ms(0, 0.0), 250);
        assert_eq!(delay_ms(0, 1.0), 500);
        assert_eq!(delay_ms(1, 0.5), 750);
        assert_eq!(delay_ms(3, 0.0), 2000);
        assert_eq!(delay_ms(30, 1.0), CAP_MS, "capped, no overflow");
        assert_eq!(delay_ms(30, 0.0), CAP_MS / 2);
        for attempt in 0..10 {
            let (lo, hi) = (delay_ms(attempt, 0.0), delay_ms(attempt, 0.999));
            assert!(lo <= hi && hi <= CAP_MS);
        }
    }
}
