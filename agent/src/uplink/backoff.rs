//! Reconnection delays with full jitter: after a hub restart every agent of a fleet loses its
//! connection in the same instant, and fixed delays would bring them all back in the same
//! instant too. Each delay is drawn uniformly between a floor and an exponentially growing
//! ceiling, so a fleet spreads its reconnections over seconds while one agent after a short
//! blip is usually back within one.

use std::time::Duration;

use rand::Rng;

/// The delays before successive reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    floor: Duration,
    first_ceiling: Duration,
    cap: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Delays between `floor` and a ceiling that starts at `first_ceiling` and doubles up to
    /// `cap` with every failed attempt.
    pub fn new(floor: Duration, first_ceiling: Duration, cap: Duration) -> Backoff {
        Backoff {
            floor,
            first_ceiling,
            cap,
            ceiling: first_ceiling,
        }
    }

    /// The MQTT link's: 0.1 s to 3 s at first, up to 30 s.
    pub fn mqtt() -> Backoff {
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(3),
            Duration::from_secs(30),
        )
    }

    /// The next delay; the ceiling grows for the one after.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let high = self.ceiling.max(self.floor);
        let delay = rng.gen_range(self.floor..=high);
        self.ceiling = (self.ceiling * 2).min(self.cap);
        delay
    }

    /// Connected again: the next failure starts from the first ceiling.
    pub fn reset(&mut self) {
        self.ceiling = self.first_ceiling;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_thousand_agents_do_not_come_back_in_the_same_second() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut per_second = [0usize; 4];
        for _ in 0..1000 {
            let delay = Backoff::mqtt().next_delay(&mut rng);
            per_second[delay.as_secs() as usize] += 1;
        }
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        assert!(busiest < 400, "{per_second:?}");
        assert_eq!(per_second.iter().sum::<usize>(), 1000, "every first delay is under 3 s");
    }

    #[test]
    fn delays_stay_within_their_bounds_and_the_ceiling_resets() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut b = Backoff::mqtt();
        let mut longest = Duration::ZERO;
        for _ in 0..20 {
            let d = b.next_delay(&mut rng);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_secs(30), "{d:?}");
            longest = longest.max(d);
        }
        assert!(longest > Duration::from_secs(6), "the ceiling grows: {longest:?}");
        b.reset();
        for _ in 0..50 {
            let mut again = b.clone();
            assert!(again.next_delay(&mut rng) <= Duration::from_secs(3));
        }
    }
}
