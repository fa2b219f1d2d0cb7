//! Shapley-value estimates for one window, computed through the tract scorer.
//!
//! A player is one of the 78 features across all 10 flows of the window. The baseline is the
//! scaled training mean, i.e. 0 in scaled space. Each sampled permutation adds the features
//! to the baseline one by one; the score change at each step is that feature's marginal
//! contribution. All 79 prefix windows of a permutation go through tract as one batch, and
//! every permutation is paired with its reverse (antithetic sampling) to cut variance.
//! Marginals telescope, so the values of every permutation sum exactly to
//! f(x) − f(baseline) (the efficiency property) whatever the sample size.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::score::Model;
use crate::{Window, FEATURE_COUNT, WINDOW};

/// Features reported per explanation.
pub const TOP: usize = 10;

/// One feature's estimated contribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub index: usize,
    pub name: String,
    /// Change in the attack probability attributed to this feature.
    pub value: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Score of the baseline window.
    pub baseline_score: f32,
    /// Score of the explained window.
    pub score: f32,
    /// The [`TOP`] features with the largest |value|, largest first.
    pub top: Vec<Contribution>,
    /// All 78 values in feature order.
    pub values: Vec<f32>,
    /// Permutations evaluated.
    pub permutations: usize,
}

/// Estimates Shapley values of the attack score for a window of raw features, with
/// `permutations` sampled permutations (rounded up to even for antithetic pairs).
pub fn explain(model: &Model, window: &Window, permutations: usize, seed: u64) -> Result<Explanation> {
    if permutations == 0 {
        return Err(Error::Shape("at least one permutation is needed".into()));
    }
    let x = model.scaler().scale_window(window);
    let baseline: Window = [[0.0; FEATURE_COUNT]; WINDOW];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pairs = permutations.div_ceil(2);
    let mut sums = [0f64; FEATURE_COUNT];
    let mut ends = None;
    for _ in 0..pairs {
        let mut order: Vec<usize> = (0..FEATURE_COUNT).collect();
        order.shuffle(&mut rng);
        let reversed: Vec<usize> = order.iter().rev().copied().collect();
        for perm in [order, reversed] {
            let mut current = baseline;
            let mut batch = Vec::with_capacity(FEATURE_COUNT + 1);
            batch.push(current);
            for &j in &perm {
                for t in 0..WINDOW {
                    current[t][j] = x[t][j];
                }
                batch.push(current);
            }
            let scores = model.score_scaled(&batch)?.scores;
            for (k, &j) in perm.iter().enumerate() {
                sums[j] += f64::from(scores[k + 1]) - f64::from(scores[k]);
            }
            ends = Some((scores[0], scores[FEATURE_COUNT]));
        }
    }
    let (baseline_score, score) = ends.unwrap_or((0.0, 0.0));
    let n = (2 * pairs) as f64;
    let values: Vec<f32> = sums.iter().map(|s| (s / n) as f32).collect();
    let mut ranked: Vec<usize> = (0..FEATURE_COUNT).collect();
    ranked.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()));
    let top = ranked
        .into_iter()
        .take(TOP)
        .map(|j| Contribution {
            index: j,
            name: gatewatch_proto::FEATURES[j].name.to_string(),
            value: values[j],
        })
        .collect();
    Ok(Explanation {
        baseline_score,
        score,
        top,
        values,
        permutations: 2 * pairs,
    })
}
