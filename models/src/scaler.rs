//! StandardScaler for the 78 flow features, stored as JSON next to the model.
//!
//! Non-finite inputs are mapped before scaling, explicitly: `+Infinity` (a rate over a zero
//! duration in the published CSVs) becomes the largest finite value seen in training for
//! that feature, `−Infinity` the smallest, and `NaN` (0/0) the training mean, i.e. a scaled
//! 0. Features with (near) zero variance are centred but not divided. Scaled values are
//! clipped to ±[`CLIP`] so one absurd value cannot saturate the network.
//!
//! Optionally each value is first compressed by `sign(x)·ln(1 + |x|)` ([`Transform::SignedLog`]).
//! Flow features are heavy-tailed (a flood's rate reaches 1e9, a browser's flows carry tens of
//! packets): standardised linearly, the floods set the scale and everything a web client does
//! lands within a fraction of a unit of zero; compressed, 2 and 20 packets are as far apart as
//! 2,000 and 20,000.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{Window, FEATURE_COUNT};

/// Bound on scaled values.
pub const CLIP: f64 = 50.0;
/// Standard deviations below this count as zero variance.
const MIN_STD: f64 = 1e-9;

/// How raw values are compressed before they are standardised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// None: plain standardisation (the scaler files written before transforms existed).
    #[default]
    Linear,
    /// `sign(x)·ln(1 + |x|)`, then standardisation.
    SignedLog,
}

impl Transform {
    fn apply(self, v: f64) -> f64 {
        match self {
            Transform::Linear => v,
            Transform::SignedLog => v.signum() * v.abs().ln_1p(),
        }
    }

    fn invert(self, t: f64) -> f64 {
        match self {
            Transform::Linear => t,
            Transform::SignedLog => t.signum() * t.abs().exp_m1(),
        }
    }
}

impl std::str::FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "linear" => Ok(Transform::Linear),
            "log" | "signed_log" => Ok(Transform::SignedLog),
            other => Err(format!("unknown scaling `{other}`: use `log` or `linear`")),
        }
    }
}

/// Unknown keys are refused: a scaler from a later build may transform values in a way this
/// one does not know, and scaling without it would feed the network garbage, silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    /// Applied to each raw value (after the non-finite mapping) before standardisation.
    #[serde(default)]
    pub transform: Transform,
    /// Feature names in order, checked on load against this build's schema.
    pub features: Vec<String>,
    /// Of the transformed values.
    pub mean: Vec<f64>,
    /// Already guarded: 1 where the training data had zero variance.
    pub std: Vec<f64>,
    /// Replacement for `+Infinity` (a raw value, transformed like any other).
    pub pos_inf: Vec<f64>,
    /// Replacement for `−Infinity`.
    pub neg_inf: Vec<f64>,
    pub clip: f64,
}

impl Scaler {
    /// Fits on raw feature rows; non-finite values take no part in the statistics.
    pub fn fit<'a>(rows: impl IntoIterator<Item = &'a [f64; FEATURE_COUNT]>, transform: Transform) -> Result<Scaler> {
        let mut n = [0u64; FEATURE_COUNT];
        let mut mean = [0f64; FEATURE_COUNT];
        let mut m2 = [0f64; FEATURE_COUNT];
        let mut lo = [f64::INFINITY; FEATURE_COUNT];
        let mut hi = [f64::NEG_INFINITY; FEATURE_COUNT];
        let mut rows_seen = 0usize;
        for row in rows {
            rows_seen += 1;
            for (j, &v) in row.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
                // Welford: the rate features reach 1e9 and plain sums of squares lose digits.
                let t = transform.apply(v);
                n[j] += 1;
                let d = t - mean[j];
                mean[j] += d / n[j] as f64;
                m2[j] += d * (t - mean[j]);
            }
        }
        if rows_seen == 0 {
            return Err(Error::Data("cannot fit a scaler on no flows".into()));
        }
        let mut std = vec![1.0; FEATURE_COUNT];
        for j in 0..FEATURE_COUNT {
            if n[j] == 0 {
                lo[j] = 0.0;
                hi[j] = 0.0;
            } else {
                let s = (m2[j] / n[j] as f64).sqrt();
                if s >= MIN_STD {
                    std[j] = s;
                }
            }
        }
        Ok(Scaler {
            transform,
            features: feature_names(),
            mean: mean.to_vec(),
            std,
            pos_inf: hi.to_vec(),
            neg_inf: lo.to_vec(),
            clip: CLIP,
        })
    }

    /// The identity scaler (mean 0, std 1, infinities at ±[`CLIP`]), for untrained models
    /// and benchmarks that feed already scaled windows.
    pub fn identity() -> Scaler {
        Scaler {
            transform: Transform::Linear,
            features: feature_names(),
            mean: vec![0.0; FEATURE_COUNT],
            std: vec![1.0; FEATURE_COUNT],
            pos_inf: vec![CLIP; FEATURE_COUNT],
            neg_inf: vec![-CLIP; FEATURE_COUNT],
            clip: CLIP,
        }
    }

    /// Scales one value of feature `j`.
    pub fn scale_value(&self, j: usize, v: f64) -> f32 {
        let t = if v.is_nan() {
            self.mean[j]
        } else if v == f64::INFINITY {
            self.transform.apply(self.pos_inf[j])
        } else if v == f64::NEG_INFINITY {
            self.transform.apply(self.neg_inf[j])
        } else {
            self.transform.apply(v)
        };
        ((t - self.mean[j]) / self.std[j]).clamp(-self.clip, self.clip) as f32
    }

    /// The raw value of feature `j` that scales to 0: the training mean, in raw units.
    pub fn raw_mean(&self, j: usize) -> f64 {
        self.transform.invert(self.mean[j])
    }

    /// Scales one flow.
    pub fn scale_row(&self, row: &[f64; FEATURE_COUNT]) -> [f32; FEATURE_COUNT] {
        std::array::from_fn(|j| self.scale_value(j, row[j]))
    }

    /// Scales a window of raw features given as f32.
    pub fn scale_window(&self, w: &Window) -> Window {
        w.map(|row| std::array::from_fn(|j| self.scale_value(j, f64::from(row[j]))))
    }

    /// Scales a partial window: its oldest `padded` rows are padding (whatever they hold) and
    /// become [`crate::PAD_VALUE`] rows; the rest are flows.
    pub fn scale_window_padded(&self, w: &Window, padded: usize) -> Window {
        let mut out = self.scale_window(w);
        for row in out.iter_mut().take(padded.min(crate::WINDOW - 1)) {
            *row = [crate::PAD_VALUE; FEATURE_COUNT];
        }
        out
    }

    /// Refuses a scaler for another feature schema or with unusable numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Error::BadModel(format!("scaler: {m}"));
        if self.features != feature_names() {
            return Err(bad("feature names or order differ from this build's schema".into()));
        }
        for (name, v) in [
            ("mean", &self.mean),
            ("std", &self.std),
            ("pos_inf", &self.pos_inf),
            ("neg_inf", &self.neg_inf),
        ] {
            if v.len() != FEATURE_COUNT || v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("{name} must hold {FEATURE_COUNT} finite numbers")));
            }
        }
        if self.std.iter().any(|s| *s <= 0.0) || self.clip.is_nan() || self.clip <= 0.0 {
            return Err(bad("std and clip must be positive".into()));
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Json {
            path: path.into(),
            source: e,
        })?;
        std::fs::write(path, json).map_err(|e| Error::io(path, e))
    }

    pub fn load(path: &Path) -> Result<Scaler> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let s: Scaler = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: path.into(),
            source: e,
        })?;
        s.validate()?;
        Ok(s)
    }
}

fn feature_names() -> Vec<String> {
    gatewatch_proto::FEATURES.iter().map(|f| f.name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<[f64; FEATURE_COUNT]> {
        (0..4)
            .map(|i| {
                let mut r = [7.0; FEATURE_COUNT];
                r[0] = i as f64; // 0, 1, 2, 3
                r[14] = if i == 3 { f64::INFINITY } else { 1e6 * i as f64 };
                r[15] = if i == 2 { f64::NAN } else { 10.0 };
                r
            })
            .collect()
    }

    #[test]
    fn fits_guards_and_maps_non_finite_values() {
        let s = Scaler::fit(rows().iter(), Transform::Linear).expect("fit");
        s.validate().expect("valid");
        assert_eq!(s.mean[0], 1.5);
        assert!((s.std[0] - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.std[1], 1.0, "zero variance is guarded");
        assert_eq!(s.scale_value(1, 7.0), 0.0);
        // Infinity maps to the largest finite training value (2e6), NaN to the mean.
        assert_eq!(s.pos_inf[14], 2e6);
        assert_eq!(s.scale_value(14, f64::INFINITY), s.scale_value(14, 2e6));
        assert_eq!(s.scale_value(14, f64::NEG_INFINITY), s.scale_value(14, 0.0));
        assert_eq!(s.scale_value(15, f64::NAN), 0.0);
        assert_eq!(s.scale_value(0, 1e12), CLIP as f32);
        let scaled = s.scale_row(&rows()[3]);
        assert!(scaled.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn signed_log_compresses_before_standardising() {
        let s = Scaler::fit(rows().iter(), Transform::SignedLog).expect("fit");
        let logs: Vec<f64> = [0.0f64, 1.0, 2.0, 3.0].iter().map(|v| v.ln_1p()).collect();
        let mean = logs.iter().sum::<f64>() / 4.0;
        assert!((s.mean[0] - mean).abs() < 1e-12);
        let std = (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((f64::from(s.scale_value(0, 3.0)) - (3f64.ln_1p() - mean) / std).abs() < 1e-6);
        // The tail is compressed: a million times the largest training value is not clipped.
        assert!(s.scale_value(0, 3e6).abs() < CLIP as f32);
        assert!(s.scale_value(0, -3.0) < s.scale_value(0, 0.0), "the sign is kept");
        // Non-finite values map as in the linear scaler, through the same compression.
        assert_eq!(s.pos_inf[14], 2e6);
        assert_eq!(s.scale_value(14, f64::INFINITY), s.scale_value(14, 2e6));
        assert_eq!(s.scale_value(15, f64::NAN), 0.0);
        assert!(s.scale_value(0, s.raw_mean(0)).abs() < 1e-6);
    }

    #[test]
    fn files_without_a_transform_are_linear() {
        let s = Scaler::fit(rows().iter(), Transform::Linear).expect("fit");
        let mut json: serde_json::Value = serde_json::to_value(&s).expect("json");
        json.as_object_mut().expect("object").remove("transform");
        let old: Scaler = serde_json::from_value(json).expect("old file");
        assert_eq!(old.transform, Transform::Linear);
        assert_eq!("log".parse::<Transform>(), Ok(Transform::SignedLog));
        assert!("cube"
            .parse::<Transform>()
            .expect_err("refused")
            .contains("`log` or `linear`"));
        let mut later = serde_json::to_value(&s).expect("json");
        later["offset"] = serde_json::json!([0.0]);
        assert!(
            serde_json::from_value::<Scaler>(later).is_err(),
            "an unknown key is refused"
        );
    }

    #[test]
    fn json_round_trip_and_validation() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("scaler.json");
        let s = Scaler::fit(rows().iter(), Transform::Linear).expect("fit");
        s.save(&path).expect("save");
        assert_eq!(Scaler::load(&path).expect("load"), s);
        let mut broken = s.clone();
        broken.std[3] = 0.0;
        broken.save(&path).expect("save");
        assert!(Scaler::load(&path).is_err());
        let mut renamed = s;
        renamed.features.swap(0, 1);
        renamed.save(&path).expect("save");
        assert!(Scaler::load(&path).is_err());
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(Scaler::load(&path), Err(Error::Json { .. })));
    }
}
