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

/// One point of an operating curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f32,
    /// Share of benign windows flagged.
    pub false_positive_rate: f64,
    /// Share of the family's windows flagged.
    pub recall: f64,
    /// Flagged windows of the family among all flagged windows of the family and benign.
    pub precision: f64,
}

/// ROC and precision-recall of the score head for one attack family against the benign
/// windows (each family's windows and the benign ones, nothing else).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyCurve {
    pub family: Family,
    pub windows: usize,
    pub benign_windows: usize,
    pub roc_auc: Option<f64>,
    /// Area under the precision-recall curve as average precision.
    pub average_precision: Option<f64>,
    /// The curve at fixed thresholds and at the model's own (marked by `threshold`).
    pub points: Vec<CurvePoint>,
}

/// [`FamilyCurve`] for every attack family present, at `thresholds` (the model's among them).
pub fn family_curves(scores: &[f32], truth: &[Family], thresholds: &[f32]) -> Vec<FamilyCurve> {
    let benign: Vec<f32> = scores
        .iter()
        .zip(truth)
        .filter(|(_, t)| !t.is_attack())
        .map(|(s, _)| *s)
        .collect();
    FAMILIES
        .iter()
        .filter(|f| f.is_attack())
        .filter_map(|&family| {
            let mine: Vec<f32> = scores
                .iter()
                .zip(truth)
                .filter(|(_, t)| **t == family)
                .map(|(s, _)| *s)
                .collect();
            if mine.is_empty() {
                return None;
            }
            let mut both: Vec<f32> = benign.clone();
            both.extend(&mine);
            let labels: Vec<Family> = std::iter::repeat_n(Family::Benign, benign.len())
                .chain(std::iter::repeat_n(family, mine.len()))
                .collect();
            let points = thresholds
                .iter()
                .map(|&t| {
                    let fp = benign.iter().filter(|s| **s >= t).count();
                    let tp = mine.iter().filter(|s| **s >= t).count();
                    CurvePoint {
                        threshold: t,
                        false_positive_rate: if benign.is_empty() {
                            0.0
                        } else {
                            fp as f64 / benign.len() as f64
                        },
                        recall: tp as f64 / mine.len() as f64,
                        precision: if tp + fp == 0 {
                            1.0
                        } else {
                            tp as f64 / (tp + fp) as f64
                        },
                    }
                })
                .collect();
            Some(FamilyCurve {
                family,
                windows: mine.len(),
                benign_windows: benign.len(),
                roc_auc: roc_auc(&both, &labels),
                average_precision: average_precision(&both, &labels),
                points,
            })
        })
        .collect()
}

/// Average precision: the mean of the precision at each attack window's rank, best first
/// (tied scores are taken together).
fn average_precision(scores: &[f32], truth: &[Family]) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores.iter().zip(truth).map(|(s, t)| (*s, t.is_attack())).collect();
    let pos = pairs.iter().filter(|p| p.1).count();
    if pos == 0 || pos == pairs.len() {
        return None;
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut seen, mut sum) = (0usize, 0usize, 0.0);
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let hits = pairs[i..j].iter().filter(|p| p.1).count();
        tp += hits;
        seen += j - i;
        sum += hits as f64 * tp as f64 / seen as f64;
        i = j;
    }
    Some(sum / pos as f64)
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

    #[test]
    fn family_curves_and_average_precision() {
        use Family::*;
        let truth = [Benign, Benign, Benign, Scan, Scan, DosDdos];
        let scores = [0.1, 0.2, 0.95, 0.9, 0.99, 0.05];
        // Ranked: 0.99 scan, 0.95 benign, 0.9 scan: precisions 1 and 2/3.
        assert!((average_precision(&scores[..5], &truth[..5]).expect("ap") - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
        let curves = family_curves(&scores, &truth, &[0.5]);
        assert_eq!(curves.len(), 2);
        let scan = &curves[0];
        assert_eq!((scan.family, scan.windows, scan.benign_windows), (Scan, 2, 3));
        assert_eq!(scan.points[0].recall, 1.0);
        assert!((scan.points[0].false_positive_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(curves[1].points[0].recall, 0.0);
        assert_eq!(curves[1].roc_auc, Some(0.0));
    }
}
