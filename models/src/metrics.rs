//! Detection quality: attack-vs-benign F1, ROC-AUC, false-positive rate, per-family
//! precision/recall/F1 and the family confusion matrix.

use serde::{Deserialize, Serialize};

use crate::family::Family;
use crate::{FAMILIES, FAMILY_COUNT};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyMetrics {
    pub family: Family,
    /// Windows of this family in the data.
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Share of this family's windows the `score` head calls attacks: detection recall for an
    /// attack family, the false-positive rate for benign (absent in older reports).
    #[serde(default)]
    pub flagged: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub windows: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Share of benign windows scored as attacks.
    pub false_positive_rate: f64,
    /// `None` when only one class is present.
    pub roc_auc: Option<f64>,
    pub families: Vec<FamilyMetrics>,
    /// `confusion[true][predicted]` in [`FAMILIES`] order.
    pub confusion: Vec<Vec<usize>>,
}

/// Computes the metrics from scores, predicted families and true families.
pub fn compute(scores: &[f32], predicted: &[Family], truth: &[Family], threshold: f32) -> Metrics {
    let n = truth.len();
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (s, t) in scores.iter().zip(truth) {
        match (*s >= threshold, t.is_attack()) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let f1 = |p: f64, r: f64| if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let mut confusion = vec![vec![0usize; FAMILY_COUNT]; FAMILY_COUNT];
    for (p, t) in predicted.iter().zip(truth) {
        confusion[t.index()][p.index()] += 1;
    }
    let mut flagged = [0usize; FAMILY_COUNT];
    for (s, t) in scores.iter().zip(truth) {
        flagged[t.index()] += usize::from(*s >= threshold);
    }
    let families = FAMILIES
        .iter()
        .map(|f| {
            let i = f.index();
            let support: usize = confusion[i].iter().sum();
            let predicted_as: usize = confusion.iter().map(|row| row[i]).sum();
            let p = ratio(confusion[i][i], predicted_as);
            let r = ratio(confusion[i][i], support);
            FamilyMetrics {
                family: *f,
                support,
                precision: p,
                recall: r,
                f1: f1(p, r),
                flagged: ratio(flagged[i], support),
            }
        })
        .collect();
    Metrics {
        windows: n,
        accuracy: ratio(tp + tn, n),
        precision,
        recall,
        f1: f1(precision, recall),
        false_positive_rate: ratio(fp, fp + tn),
        roc_auc: roc_auc(scores, truth),
        families,
        confusion,
    }
}

/// ROC-AUC as the Mann–Whitney statistic with tied scores counted half.
fn roc_auc(scores: &[f32], truth: &[Family]) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores.iter().zip(truth).map(|(s, t)| (*s, t.is_attack())).collect();
    let pos = pairs.iter().filter(|p| p.1).count();
    let neg = pairs.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        // Ranks i+1..=j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        use Family::*;
        let truth = [Benign, Benign, Scan, Scan, DosDdos];
        let scores = [0.1, 0.7, 0.8, 0.4, 0.9];
        let predicted = [Benign, Scan, Scan, Benign, Scan];
        let m = compute(&scores, &predicted, &truth, 0.5);
        assert_eq!((m.precision, m.recall), (2.0 / 3.0, 2.0 / 3.0));
        assert_eq!(m.false_positive_rate, 0.5);
        // Positive/negative pairs ranked right: 0.8>0.1,0.8>0.7,0.4>0.1,0.9>0.1,0.9>0.7 = 5 of 6.
        assert_eq!(m.roc_auc, Some(5.0 / 6.0));
        assert_eq!(m.confusion[Scan.index()][Scan.index()], 1);
        assert_eq!(m.families[Scan.index()].recall, 0.5);
        assert_eq!(m.families[DosDdos.index()].recall, 0.0);
        // The score head flags one scan window of two, the DoS window, and one benign of two.
        assert_eq!(m.families[Scan.index()].flagged, 0.5);
        assert_eq!(m.families[DosDdos.index()].flagged, 1.0);
        assert_eq!(m.families[Benign.index()].flagged, 0.5);
        assert_eq!(roc_auc(&[0.3, 0.3], &[Benign, Scan]), Some(0.5));
        assert_eq!(roc_auc(&[0.3], &[Scan]), None);
    }
}
