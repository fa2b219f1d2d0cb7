//! Fixed-window rate limiter kept in memory (one hub); counts per key and minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    per_window: u32,
    window: Duration,
    slots: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn per_minute(n: u32) -> Self {
        RateLimiter {
            per_window: n,
            window: Duration::from_secs(60),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request for `key`; `Err(seconds)` says how long to wait when over the limit.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut slots) = self.slots.lock() else {
            return Ok(());
        };
        // Keep memory bounded: forget expired windows when the map grows.
        if slots.len() > 10_000 {
            slots.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let slot = slots.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(slot.0) >= self.window {
            *slot = (now, 0);
        }
        if slot.1 >= self.per_window {
            let left = self.window.saturating_sub(now.duration_since(slot.0));
            return Err(left.as_secs() + 1);
        }
        slot.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let l = RateLimiter::per_minute(2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").expect_err("must fail");
        assert!((1..=61).contains(&wait));
        assert!(l.check("b").is_ok());
    }
}
