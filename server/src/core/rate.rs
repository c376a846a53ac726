//! Rate limits: a token bucket driven by the time the engine is given (never a clock of its
//! own), so the same limiter is exact under the tests' fake clock and in the live server.

use super::Millis;

/// A sustained rate with a burst above it. `per_minute == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per minute (a per-minute unit keeps slow rates, such as rooms created
    /// per address, exact).
    pub per_minute: u64,
    /// Tokens the bucket holds at most (and starts with).
    pub burst: u32,
}

impl Rate {
    pub const fn per_second(n: u32, burst: u32) -> Rate {
        Rate { per_minute: n as u64 * 60, burst }
    }

    pub const fn per_minute(n: u32, burst: u32) -> Rate {
        Rate { per_minute: n as u64, burst }
    }

    pub fn is_off(&self) -> bool {
        self.per_minute == 0
    }
}

/// One token, in the bucket's unit: a token is 60,000 units and a rate of `n` per minute adds
/// `n` units per millisecond, so refills are exact integers (no float drift at slow rates).
const TOKEN: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    units: u64,
    last: Millis,
}

impl TokenBucket {
    pub fn full(rate: Rate, now: Millis) -> Self {
        Self { units: capacity(rate), last: now }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, rate: Rate, now: Millis) -> bool {
        if rate.is_off() {
            return true;
        }
        self.refill(rate, now);
        if self.units >= TOKEN {
            self.units -= TOKEN;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (it remembers nothing a fresh one would not).
    pub fn is_full(&mut self, rate: Rate, now: Millis) -> bool {
        self.refill(rate, now);
        self.units >= capacity(rate)
    }

    fn refill(&mut self, rate: Rate, now: Millis) {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.units = self.units.saturating_add(elapsed.saturating_mul(rate.per_minute)).min(capacity(rate));
    }
}

fn capacity(rate: Rate) -> u64 {
    u64::from(rate.burst.max(1)) * TOKEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_configured_rate() {
        let rate = Rate::per_second(10, 2);
        let mut b = TokenBucket::full(rate, 0);
        assert!(b.try_take(rate, 0));
        assert!(b.try_take(rate, 0));
        assert!(!b.try_take(rate, 0), "burst spent");
        assert!(!b.try_take(rate, 50), "half a token after 50 ms at 10/s");
        assert!(b.try_take(rate, 100));
        assert!(b.try_take(Rate::per_second(0, 0), 100), "0 disables the limit");
    }

    #[test]
    fn slow_rates_are_exact_per_minute() {
        let rate = Rate::per_minute(3, 3);
        let mut b = TokenBucket::full(rate, 0);
        assert!((0..3).all(|_| b.try_take(rate, 0)));
        assert!(!b.try_take(rate, 19_999), "one token takes 20 s");
        assert!(!b.is_full(rate, 20_000));
        assert!(b.try_take(rate, 20_000));
        assert!(b.is_full(rate, 80_000));
    }
}
