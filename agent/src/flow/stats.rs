//! Streaming summary statistics (Welford's algorithm): constant memory, one pass,
//! numerically stable for the long flows and large microsecond values we see.

/// Count, mean, variance, min and max of a stream of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welford {
    n: u32,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Welford {
    fn default() -> Self {
        Welford {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Welford {
    #[inline]
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / f64::from(self.n);
        self.m2 += delta * (x - self.mean);
        if x < self.min {
            self.min = x;
        }
        if x > self.max {
            self.max = x;
        }
    }

    pub fn count(&self) -> u32 {
        self.n
    }

    /// 0 when empty, as CICFlowMeter writes it.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.mean
        }
    }

    /// Sample variance (n − 1); 0 for fewer than two values.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / f64::from(self.n - 1)).max(0.0)
        }
    }

    /// Sample standard deviation (n − 1); 0 for fewer than two values.
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }

    pub fn min(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.min
        }
    }

    pub fn max(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.max
        }
    }

    pub fn sum(&self) -> f64 {
        self.mean * f64::from(self.n)
    }
}

/// Mean, variance, min and max whose count is kept by the caller (a flow already
/// counts its packets; storing the count again in every statistic costs memory).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// Adds `x`; `n` is the count including `x`.
    #[inline]
    pub fn push(&mut self, x: f64, n: u32) {
        let delta = x - self.mean;
        self.mean += delta / f64::from(n);
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// The summary of `n` values.
    pub fn with_count(&self, n: u32) -> Welford {
        Welford {
            n,
            mean: self.mean,
            m2: self.m2,
            min: self.min,
            max: self.max,
        }
    }
}

impl Welford {
    /// Both streams as one (Chan et al.'s pairwise combination).
    pub fn merge(&self, other: &Welford) -> Welford {
        if self.n == 0 {
            return *other;
        }
        if other.n == 0 {
            return *self;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        let (na, nb, nf) = (f64::from(self.n), f64::from(other.n), f64::from(n));
        Welford {
            n,
            mean: self.mean + delta * nb / nf,
            m2: self.m2 + other.m2 + delta * delta * na * nb / nf,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_all_zero() {
        let w = Welford::default();
        assert_eq!(
            (w.count(), w.mean(), w.std(), w.min(), w.max(), w.sum()),
            (0, 0.0, 0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn matches_two_pass_sample_statistics() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut w = Welford::default();
        xs.iter().for_each(|x| w.push(*x));
        let mean = xs.iter().sum::<f64>() / 8.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 7.0;
        assert_eq!(w.mean(), 5.0);
        assert!((w.variance() - var).abs() < 1e-12);
        assert_eq!((w.min(), w.max(), w.sum()), (2.0, 9.0, 40.0));
    }

    #[test]
    fn merged_streams_equal_one_stream() {
        let (a, b) = ([1.0, 5.0, 2.0], [10.0, 0.5, 7.0, 7.0]);
        let (mut wa, mut wb, mut all) = (Welford::default(), Moments::default(), Welford::default());
        a.iter().for_each(|x| wa.push(*x));
        b.iter().enumerate().for_each(|(i, x)| wb.push(*x, i as u32 + 1));
        a.iter().chain(b.iter()).for_each(|x| all.push(*x));
        let merged = wa.merge(&wb.with_count(4));
        assert_eq!((merged.count(), merged.min(), merged.max()), (7, 0.5, 10.0));
        assert!((merged.mean() - all.mean()).abs() < 1e-12);
        assert!((merged.variance() - all.variance()).abs() < 1e-9);
        assert_eq!(Welford::default().merge(&all), all);
    }

    #[test]
    fn stable_for_large_offsets() {
        let mut w = Welford::default();
        for i in 0..1000 {
            w.push(1.0e9 + f64::from(i % 2));
        }
        assert!((w.variance() - 0.250_250_250_25).abs() < 1e-6);
    }
}
