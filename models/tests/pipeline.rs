//! End to end on a small synthetic task: train in candle, export, score in tract, explain,
//! perturb. The task: benign flows and bursts of three attack families whose flows are
//! shifted on different feature groups, embedded in device sequences.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::DType;
use gatewatch_models::data::{samples, FlowSequence, LabelledFlow, Sample};
use gatewatch_models::net::{windows_tensor, Net};
use gatewatch_models::score::{LoadOptions, Plan};
use gatewatch_models::store::{self, Metadata};
use gatewatch_models::train::{self, TrainConfig};
use gatewatch_models::{explain, fgsm, onnx, Error, Family, Model, Scaler, Window, FEATURE_COUNT, WINDOW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ATTACKS: [Family; 3] = [Family::Scan, Family::DosDdos, Family::BruteForce];

fn toy_sequences(count: usize, seed: u64) -> Vec<FlowSequence> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|s| {
            let mut flows = Vec::new();
            while flows.len() < 120 {
                let burst = rng.gen_range(10..25);
                let family = if rng.gen_bool(0.5) {
                    Family::Benign
                } else {
                    ATTACKS[rng.gen_range(0..ATTACKS.len())]
                };
                for _ in 0..burst {
                    let mut features = [0f64; FEATURE_COUNT];
                    for (j, v) in features.iter_mut().enumerate() {
                        // Raw scales differ by feature, as real flow features do.
                        *v = (rng.gen_range(0.0..1.0) + (j % 7) as f64) * 10f64.powi((j % 4) as i32);
                    }
                    if let Some(k) = ATTACKS.iter().position(|f| *f == family) {
                        for v in &mut features[k * 10..k * 10 + 10] {
                            *v *= 1.8;
                        }
                    }
                    flows.push(LabelledFlow { features, family });
                }
            }
            FlowSequence {
                name: format!("toy-{s}"),
                flows,
            }
        })
        .collect()
}

struct Trained {
    flat: Vec<f32>,
    scaler: Scaler,
    test: Vec<Sample>,
    dir: tempfile::TempDir,
}

fn trained() -> &'static Trained {
    static CELL: OnceLock<Trained> = OnceLock::new();
    CELL.get_or_init(|| {
        let config = TrainConfig {
            epochs: 12,
            patience: 3,
            seed: 5,
            split_seed: 5,
            ..TrainConfig::default()
        };
        let (net, scaler, report) = train::fit(&toy_sequences(12, 1), &config).expect("fit");
        assert!(report.validation_windows > 0 && report.best_epoch >= 1);
        let flat = net.to_flat().expect("flat");
        let dir = tempfile::tempdir().expect("dir");
        store::save_model_dir(dir.path(), &flat, &scaler, &Metadata::new("toy")).expect("save");
        let test = samples(&toy_sequences(4, 99), &scaler);
        Trained {
            flat,
            scaler,
            test,
            dir,
        }
    })
}

fn accuracy(scores: &[f32], set: &[Sample]) -> f64 {
    let right = scores
        .iter()
        .zip(set)
        .filter(|(s, x)| (**s >= 0.5) == x.family.is_attack())
        .count();
    right as f64 / set.len() as f64
}

#[test]
fn training_learns_and_is_deterministic() {
    let t = trained();
    let net = Net::from_flat(&t.flat).expect("net");
    let windows: Vec<Window> = t.test.iter().map(|s| s.window).collect();
    let (scores, families) = net
        .predict(&windows_tensor(&windows, DType::F32).expect("t"))
        .expect("predict");
    let acc = accuracy(&scores, &t.test);
    assert!(acc > 0.9, "held-out accuracy {acc}");
    let family_acc = families
        .iter()
        .zip(&t.test)
        .filter(|(p, s)| {
            let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
            best == Some(s.family.index())
        })
        .count() as f64
        / t.test.len() as f64;
    assert!(family_acc > 0.8, "held-out family accuracy {family_acc}");

    // Same seed, same data: the same parameters, bit for bit.
    let config = TrainConfig {
        epochs: 2,
        seed: 9,
        ..TrainConfig::default()
    };
    let data = toy_sequences(5, 3);
    let a = train::fit(&data, &config).expect("fit").0.to_flat().expect("flat");
    let b = train::fit(&data, &config).expect("fit").0.to_flat().expect("flat");
    assert_eq!(a, b);
}

#[test]
fn tract_scores_match_candle_and_do_not_depend_on_history() {
    let t = trained();
    let model = Model::load_with(t.dir.path(), LoadOptions { batch: 8 }).expect("load");
    let net = Net::from_flat(&t.flat).expect("net");
    let windows: Vec<Window> = t.test.iter().take(21).map(|s| s.window).collect();
    let (scores, families) = net
        .predict(&windows_tensor(&windows, DType::F32).expect("t"))
        .expect("predict");
    // 21 windows = two full batches of 8 and a tail of 5 padded to 8.
    let out = model.score_scaled(&windows).expect("score");
    for i in 0..windows.len() {
        assert!((out.scores[i] - scores[i]).abs() <= 1e-4, "window {i}");
        for (a, b) in out.families[i].iter().zip(&families[i]) {
            assert!((a - b).abs() <= 1e-4);
        }
    }
    // One by one (the batch-1 plan), twice, and after other windows: identical results.
    let first = model.score_scaled(&windows[3..4]).expect("score");
    model.score_scaled(&windows[10..11]).expect("score");
    let again = model.score_scaled(&windows[3..4]).expect("score");
    assert_eq!(first, again);
    assert!((first.scores[0] - out.scores[3]).abs() <= 1e-5);
}

#[test]
fn predictions_from_raw_features() {
    let t = trained();
    let model = Model::load(t.dir.path()).expect("load");
    let seq = &toy_sequences(1, 42)[0];
    let raw: Vec<Window> = seq
        .flows
        .windows(WINDOW)
        .map(|w| std::array::from_fn(|i| w[i].features.map(|v| v as f32)))
        .collect();
    let preds = model.score(&raw).expect("score");
    assert_eq!(preds.len(), raw.len());
    for p in &preds {
        assert!((p.confidence - (p.score - 0.5).abs() * 2.0).abs() < 1e-6);
        assert_eq!(p.label == gatewatch_models::score::Label::Attack, p.score >= 0.5);
        assert!((p.family_probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let flat: Vec<f32> = raw[..2].iter().flatten().flatten().copied().collect();
    // Two windows go through the batch-1 plan, the 100-odd above mostly through the batched
    // one: equal up to float rounding.
    for (a, b) in model.score_flat(&flat).expect("flat").iter().zip(&preds) {
        assert!((a.score - b.score).abs() < 1e-5 && a.family == b.family);
    }
    assert!(matches!(model.score_flat(&flat[1..]), Err(Error::Shape(_))));
    assert!(matches!(model.score_flat(&[]), Err(Error::Shape(_))));
}

fn copy_dir(from: &Path, to: &Path) {
    for f in [
        store::ONNX_FILE,
        store::SCALER_FILE,
        store::METADATA_FILE,
        store::PARAMS_FILE,
    ] {
        std::fs::copy(from.join(f), to.join(f)).expect("copy");
    }
}

#[test]
fn bad_model_files_are_errors_not_panics() {
    let t = trained();
    let dir = tempfile::tempdir().expect("dir");
    copy_dir(t.dir.path(), dir.path());
    let onnx = std::fs::read(dir.path().join(store::ONNX_FILE)).expect("read");

    std::fs::write(dir.path().join(store::ONNX_FILE), &onnx[..onnx.len() / 2]).expect("write");
    assert!(Model::load(dir.path()).is_err(), "truncated file");
    std::fs::write(dir.path().join(store::ONNX_FILE), b"\x08\x07garbage").expect("write");
    assert!(Model::load(dir.path()).is_err(), "garbage");

    // Every byte flipped in turn across the header region: whatever tract does, we get a
    // Result back (the panic guard turns a panic into Error::LoaderPanic).
    for i in (0..200).step_by(7) {
        let mut broken = onnx.clone();
        broken[i] ^= 0xff;
        let _ = Plan::load(&broken, 1);
    }

    copy_dir(t.dir.path(), dir.path());
    let mut meta = Metadata::load(&dir.path().join(store::METADATA_FILE)).expect("meta");
    meta.arch_hash = "0000000000000000".into();
    meta.save(&dir.path().join(store::METADATA_FILE)).expect("save");
    assert!(matches!(Model::load(dir.path()), Err(Error::BadModel(_))));
}

#[test]
fn shapley_values_are_efficient_and_ignore_baseline_features() {
    let t = trained();
    let model = Model::load(t.dir.path()).expect("load");
    let seq = &toy_sequences(1, 7)[0];
    let attack_start = seq.flows.iter().position(|f| f.family.is_attack()).expect("an attack");
    let start = attack_start.min(seq.flows.len() - WINDOW);
    let mut raw: Window = std::array::from_fn(|i| seq.flows[start + i].features.map(|v| v as f32));
    // Feature 70 set to the training mean in every flow: a null player.
    for row in &mut raw {
        row[70] = t.scaler.raw_mean(70) as f32;
    }
    let e = explain::explain(&model, &raw, 8, 3).expect("explain");
    assert_eq!(e.permutations, 8);
    let direct = model.score(&[raw]).expect("score")[0].score;
    let baseline = model.score_scaled(&[[[0.0; FEATURE_COUNT]; WINDOW]]).expect("b").scores[0];
    assert!((e.score - direct).abs() < 1e-5 && (e.baseline_score - baseline).abs() < 1e-5);
    let sum: f32 = e.values.iter().sum();
    assert!(
        (sum - (direct - baseline)).abs() < 1e-3,
        "efficiency: sum {sum} vs f(x) - f(baseline) {}",
        direct - baseline
    );
    // At the baseline up to the f32 rounding of the raw value, so (all but) nothing.
    assert!(e.values[70].abs() < 1e-6, "null player got {}", e.values[70]);
    assert_eq!(e.top.len(), explain::TOP);
    assert!(e.top.windows(2).all(|w| w[0].value.abs() >= w[1].value.abs()));
    assert_eq!(e.top[0].name, gatewatch_proto::FEATURES[e.top[0].index].name);
}

#[test]
fn fgsm_lowers_accuracy_as_epsilon_grows() {
    let t = trained();
    let net = Net::from_flat(&t.flat).expect("net");
    let set: Vec<&Sample> = t.test.iter().take(400).collect();
    let windows: Vec<Window> = set.iter().map(|s| s.window).collect();
    let labels: Vec<bool> = set.iter().map(|s| s.family.is_attack()).collect();
    let owned: Vec<Sample> = set.iter().map(|s| (*s).clone()).collect();
    let mut last = f64::INFINITY;
    let mut accs = Vec::new();
    for eps in [0.0, 0.1, 0.3, 0.6] {
        let perturbed = fgsm::perturb_batch(&net, &windows, &labels, eps).expect("fgsm");
        let (scores, _) = net
            .predict(&windows_tensor(&perturbed, DType::F32).expect("t"))
            .expect("p");
        let acc = accuracy(&scores, &owned);
        assert!(acc <= last + 0.02, "accuracy rose with eps {eps}: {accs:?} then {acc}");
        accs.push(acc);
        last = acc;
    }
    assert!(accs[0] > 0.9 && accs[3] < accs[0] - 0.3, "accuracies {accs:?}");
    // The single-window form agrees with the batch form and moves each value by eps.
    let one = fgsm::perturb(&net, &windows[0], labels[0], 0.25).expect("one");
    let batch = fgsm::perturb_batch(&net, &windows[..1], &labels[..1], 0.25).expect("batch");
    assert_eq!(one, batch[0]);
    assert!(one
        .iter()
        .flatten()
        .zip(windows[0].iter().flatten())
        .all(|(a, b)| (a - b).abs() <= 0.25 + 1e-6));
}

#[test]
fn exported_onnx_round_trips_through_params() {
    let t = trained();
    let (flat, scaler, meta) = store::load_training_state(t.dir.path()).expect("state");
    assert_eq!(flat, t.flat);
    assert_eq!(scaler, t.scaler);
    assert_eq!(meta.model_version, "toy");
    let bytes = onnx::export(&flat, "toy").expect("export");
    assert_eq!(bytes, std::fs::read(t.dir.path().join(store::ONNX_FILE)).expect("read"));
}
