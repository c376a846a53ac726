//! Per-connection message rate limit: a token bucket driven by the time the engine is given.

use super::Millis;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Millis,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Millis) -> Self {
        Self { tokens: f64::from(burst), last: now }
    }

    /// Take one token if there is one. `per_second == 0` means no limit.
    pub fn try_take(&mut self, per_second: u32, burst: u32, now: Millis) -> bool {
        if per_second == 0 {
            return true;
        }
        let elapsed = now.saturating_sub(self.last) as f64 / 1000.0;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_configured_rate() {
        let mut b = TokenBucket::full(2, 0);
        assert!(b.try_take(10, 2, 0));
        assert!(b.try_take(10, 2, 0));
        assert!(!b.try_take(10, 2, 0), "burst spent");
        assert!(!b.try_take(10, 2, 50), "half a token after 50 ms at 10/s");
        assert!(b.try_take(10, 2, 100));
        assert!(b.try_take(0, 0, 100), "0 disables the limit");
    }
}
