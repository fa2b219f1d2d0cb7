//! `gatewatch-models-bench`: scoring latency and throughput in tract next to onnxruntime on
//! the same ONNX file, candle's training step time, and the model's size. Prints figures;
//! run it on an otherwise idle machine (`cargo run --release --bin gatewatch-models-bench`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use clap::Parser;
use gatewatch_models::data::Sample;
use gatewatch_models::net::Net;
use gatewatch_models::score::{GraphPlan, LoadOptions, Plan};
use gatewatch_models::store::{self, Metadata};
use gatewatch_models::train::{batch_loss, ClassWeights};
use gatewatch_models::{params, Family, Model, Scaler, Window, FAMILIES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the gatewatch CNN-LSTM: tract vs onnxruntime, training step, size")]
struct Args {
    /// Model directory to measure; an untrained network of the same shape when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Batch of the batched plan.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Python interpreter with onnxruntime installed.
    #[arg(long, default_value = "python3")]
    python: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("gatewatch-bench-{}", std::process::id()));
    let dir = match &args.model {
        Some(d) => d.clone(),
        None => {
            let flat = Net::new(7)?.to_flat()?;
            store::save_model_dir(&tmp, &flat, &Scaler::identity(), &Metadata::new("untrained-bench"))?;
            tmp.clone()
        }
    };
    let onnx_path = dir.join(store::ONNX_FILE);
    let model = Model::load_with(&dir, LoadOptions { batch: args.batch })?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let windows: Vec<Window> = (0..args.batch.max(512))
        .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| rng.gen_range(-2.0..2.0))))
        .collect();

    println!("model: {} ({})", dir.display(), model.metadata().model_version);
    println!(
        "size: {} parameters, model.onnx {} bytes, params.bin {} bytes",
        params::PARAM_COUNT,
        file_len(&onnx_path),
        file_len(&dir.join(store::PARAMS_FILE))
    );
    println!(
        "allocator: {}",
        if cfg!(feature = "mimalloc") {
            "mimalloc"
        } else {
            "system"
        }
    );

    let onnx = std::fs::read(&onnx_path).with_context(|| format!("reading {}", onnx_path.display()))?;
    // "tract" is what the agent loads: the file's graph for one window, the rewritten one for
    // batches; the other rows show each graph alone.
    let (single, batched) = (Plan::load(&onnx, 1)?, Plan::load(&onnx, args.batch)?);
    measure_tract("tract", &single, &batched, &windows, args.seconds)?;
    for (graph, name) in [
        (GraphPlan::Rewritten, "tract, rewritten graph"),
        (GraphPlan::AsWritten, "tract, graph as written"),
    ] {
        let single = Plan::load_with(&onnx, 1, graph)?;
        let batched = Plan::load_with(&onnx, args.batch, graph)?;
        measure_tract(name, &single, &batched, &windows, args.seconds)?;
    }
    onnxruntime(&args, &onnx_path)?;
    training_step()?;
    if args.model.is_none() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    Ok(())
}

/// Single-window latency through the batch-1 plan, throughput through the batched one.
fn measure_tract(name: &str, single: &Plan, batched: &Plan, windows: &[Window], seconds: f64) -> Result<()> {
    let mut lat = Vec::with_capacity(3000);
    for i in 0..3300 {
        let w = &windows[i % windows.len()..i % windows.len() + 1];
        let t = Instant::now();
        single.run_scaled(w)?;
        if i >= 300 {
            lat.push(t.elapsed());
        }
    }
    let (median, p99) = percentiles(&mut lat);
    println!(
        "{name} single window: median {:.1} us, p99 {:.1} us",
        micros(median),
        micros(p99)
    );

    let batch = &windows[..batched.batch()];
    batched.run_scaled(batch)?;
    let start = Instant::now();
    let mut runs = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        batched.run_scaled(batch)?;
        runs += 1;
    }
    let rate = (runs * batch.len()) as f64 / start.elapsed().as_secs_f64();
    println!("{name} batched (batch {}): {rate:.0} windows/s", batch.len());
    Ok(())
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// The same measurements in onnxruntime (one intra-op thread), via the Python script.
fn onnxruntime(args: &Args, onnx: &Path) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_onnxruntime.py");
    let out = Command::new(&args.python)
        .arg(&script)
        .arg(onnx)
        .args([
            "--batch",
            &args.batch.to_string(),
            "--seconds",
            &args.seconds.to_string(),
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Ok(o) if o.status.code() == Some(3) => {
            println!("onnxruntime: skipped ({})", String::from_utf8_lossy(&o.stdout).trim())
        }
        Ok(o) => println!(
            "onnxruntime: failed: {}",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("no output")
        ),
        Err(e) => println!("onnxruntime: skipped ({} not runnable: {e})", args.python),
    }
    Ok(())
}

/// Median time of one Adam step on a batch of 64, on one thread as training runs.
fn training_step() -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("thread pool")?;
    pool.install(|| -> Result<()> {
        let net = Net::new(3)?;
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let samples: Vec<Sample> = (0..64)
            .map(|i| Sample {
                window: std::array::from_fn(|_| std::array::from_fn(|_| rng.gen_range(-2.0..2.0))),
                family: if i % 2 == 0 {
                    Family::Benign
                } else {
                    FAMILIES[1 + i % 8]
                },
                sequence: 0,
            })
            .collect();
        let weights = ClassWeights::from_samples(&samples);
        let refs: Vec<&Sample> = samples.iter().collect();
        let mut opt = AdamW::new(
            net.vars().to_vec(),
            ParamsAdamW {
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut times = Vec::new();
        for i in 0..60 {
            let t = Instant::now();
            let loss = batch_loss(&net, &refs, &weights, 1.0)?;
            opt.backward_step(&loss)?;
            if i >= 10 {
                times.push(t.elapsed());
            }
        }
        let (median, p99) = percentiles(&mut times);
        println!(
            "candle training step (batch 64, 1 thread): median {:.2} ms, p99 {:.2} ms",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        Ok(())
    })
}
