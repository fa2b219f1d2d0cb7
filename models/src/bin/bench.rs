//! `gatewatch-models-bench`: scoring latency and throughput in tract next to onnxruntime on
//! the same ONNX file, candle's training step time, and the model's size. Prints figures,
//! and tract's as ratios to onnxruntime measured in alternating rounds of the same run
//! (`cargo run --release --bin gatewatch-models-bench`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Single-window runs per latency measurement.
    #[arg(long, default_value_t = 2000)]
    single_runs: usize,
    /// Rounds of tract and onnxruntime, alternating, so both see the same machine load.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Core to run both on (default: the core the bench starts on). On a shared host one core
    /// can be much busier than another; pinned, both runtimes see the same one.
    #[arg(long)]
    cpu: Option<usize>,
    /// Python interpreter with onnxruntime installed.
    #[arg(long, default_value = "python3")]
    python: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.single_runs > 0, "--single-runs must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
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

    let unpinned = match pin_to_cpu(args.cpu) {
        Ok((cpu, unpinned)) => {
            println!("pinned: tract and onnxruntime both on cpu {cpu}");
            Some(unpinned)
        }
        Err(e) => {
            println!("not pinned to one core ({e:#})");
            None
        }
    };

    let onnx = std::fs::read(&onnx_path).with_context(|| format!("reading {}", onnx_path.display()))?;
    // "tract" is what the agent loads: the file's graph for one window, the rewritten one for
    // batches.
    let (single, batched) = (Plan::load(&onnx, 1)?, Plan::load(&onnx, args.batch)?);
    let mut ort = OnnxRuntime::start(&args.python, &onnx_path, args.batch)?;
    match &ort {
        Ok(o) => println!(
            "anchor: onnxruntime {} on the same file, one intra-op thread",
            o.version
        ),
        Err(why) => println!("onnxruntime: skipped ({why})"),
    }
    println!(
        "{} rounds, tract and onnxruntime alternating; single window: median (p99) of {} runs; \
         batched: batch {} for {} s",
        args.rounds, args.single_runs, args.batch, args.seconds
    );
    let mut latency_ratios = Vec::new();
    let mut throughput_ratios = Vec::new();
    for round in 1..=args.rounds {
        let (t_med, t_p99) = tract_single(&single, &windows, args.single_runs)?;
        let t_rate = tract_batched(&batched, &windows, args.seconds)?;
        let mut line = format!("round {round}: tract single {t_med:.1} us ({t_p99:.1}), batched {t_rate:.0} windows/s");
        if let Ok(o) = &mut ort {
            let (o_med, o_p99) = o.single(args.single_runs)?;
            let o_rate = o.batched(args.seconds)?;
            latency_ratios.push(t_med / o_med);
            throughput_ratios.push(t_rate / o_rate);
            line += &format!(
                " | onnxruntime single {o_med:.1} us ({o_p99:.1}), batched {o_rate:.0} windows/s \
                 | latency {:.2}x, throughput {:.2}x",
                t_med / o_med,
                t_rate / o_rate
            );
        }
        println!("{line}");
    }
    if !latency_ratios.is_empty() {
        println!(
            "tract / onnxruntime, median of {} rounds: single-window latency {:.2}x (target <= 1.0), \
             batched throughput {:.2}x (target >= 1.0)",
            args.rounds,
            median(&mut latency_ratios),
            median(&mut throughput_ratios)
        );
    }

    // The graph the agent does not pick for each case, once, for reference.
    let rewritten = Plan::load_with(&onnx, 1, GraphPlan::Rewritten)?;
    let (med, p99) = tract_single(&rewritten, &windows, args.single_runs)?;
    println!("tract, rewritten graph, single window: median {med:.1} us, p99 {p99:.1} us");
    let as_written = Plan::load_with(&onnx, args.batch, GraphPlan::AsWritten)?;
    let rate = tract_batched(&as_written, &windows, args.seconds)?;
    println!("tract, graph as written, batched: {rate:.0} windows/s");

    drop(ort);
    // candle's step runs on its own threads: measured on every core, as training runs.
    if let Some(unpinned) = unpinned {
        unpin(unpinned)?;
    }
    training_step()?;
    if args.model.is_none() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    Ok(())
}

/// Pins this thread, and so the onnxruntime process it starts, to one core; returns the core
/// and the set of cores it ran on before.
#[cfg(target_os = "linux")]
fn pin_to_cpu(cpu: Option<usize>) -> Result<(usize, rustix::thread::CpuSet)> {
    use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
    let before = sched_getaffinity(None).context("reading the cores this process may use")?;
    let cpu = cpu.unwrap_or_else(sched_getcpu);
    anyhow::ensure!(cpu < CpuSet::MAX_CPU, "cpu {cpu} is out of range");
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).with_context(|| format!("pinning to cpu {cpu}"))?;
    Ok((cpu, before))
}

#[cfg(target_os = "linux")]
fn unpin(cores: rustix::thread::CpuSet) -> Result<()> {
    rustix::thread::sched_setaffinity(None, &cores).context("restoring the cores this process may use")
}

#[cfg(not(target_os = "linux"))]
fn pin_to_cpu(_cpu: Option<usize>) -> Result<(usize, ())> {
    anyhow::bail!("pinning is implemented for Linux only")
}

#[cfg(not(target_os = "linux"))]
fn unpin(_cores: ()) -> Result<()> {
    Ok(())
}

/// Median and p99 microseconds of one window through the batch-1 plan.
fn tract_single(plan: &Plan, windows: &[Window], runs: usize) -> Result<(f64, f64)> {
    let warm_up = runs / 10;
    let mut lat = Vec::with_capacity(runs);
    for i in 0..runs + warm_up {
        let w = &windows[i % windows.len()..i % windows.len() + 1];
        let t = Instant::now();
        plan.run_scaled(w)?;
        if i >= warm_up {
            lat.push(micros(t.elapsed()));
        }
    }
    Ok(percentiles(&mut lat))
}

/// Windows per second through the batched plan.
fn tract_batched(plan: &Plan, windows: &[Window], seconds: f64) -> Result<f64> {
    let batch = &windows[..plan.batch()];
    plan.run_scaled(batch)?;
    let start = Instant::now();
    let mut runs = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        plan.run_scaled(batch)?;
        runs += 1;
    }
    Ok((runs * batch.len()) as f64 / start.elapsed().as_secs_f64())
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn median(v: &mut [f64]) -> f64 {
    percentiles(v).0
}

/// onnxruntime in a Python process kept up between rounds (`scripts/bench_onnxruntime.py`).
struct OnnxRuntime {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl OnnxRuntime {
    /// The running process, or why onnxruntime cannot be measured here.
    fn start(python: &str, onnx: &Path, batch: usize) -> Result<std::result::Result<OnnxRuntime, String>> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_onnxruntime.py");
        let spawned = Command::new(python)
            .arg(&script)
            .arg(onnx)
            .args(["--batch", &batch.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("{python} not runnable: {e}"))),
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("onnxruntime process without pipes");
        };
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .context("reading from the onnxruntime process")?;
        match first.trim().strip_prefix("ready ") {
            Some(version) => Ok(Ok(OnnxRuntime {
                version: version.to_string(),
                child,
                stdin,
                stdout,
            })),
            None => {
                let status = child.wait().context("waiting for the onnxruntime process")?;
                let said = first.trim();
                Ok(Err(match status.code() {
                    Some(3) => said.to_string(),
                    _ => format!("the onnxruntime process failed ({status}): {said}"),
                }))
            }
        }
    }

    fn ask(&mut self, command: &str) -> Result<Vec<f64>> {
        writeln!(self.stdin, "{command}").context("writing to the onnxruntime process")?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("reading from the onnxruntime process")?;
        let mut words = line.split_whitespace();
        let head = command.split_whitespace().next();
        if words.next() != head {
            anyhow::bail!("onnxruntime process answered {line:?} to {command:?}");
        }
        words
            .map(|w| {
                w.parse::<f64>()
                    .with_context(|| format!("onnxruntime process answered {line:?}"))
            })
            .collect()
    }

    fn single(&mut self, runs: usize) -> Result<(f64, f64)> {
        match self.ask(&format!("single {runs}"))?[..] {
            [median, p99] => Ok((median, p99)),
            _ => anyhow::bail!("onnxruntime process gave no latency"),
        }
    }

    fn batched(&mut self, seconds: f64) -> Result<f64> {
        match self.ask(&format!("batched {seconds}"))?[..] {
            [rate] => Ok(rate),
            _ => anyhow::bail!("onnxruntime process gave no throughput"),
        }
    }
}

impl Drop for OnnxRuntime {
    fn drop(&mut self) {
        // The script would end at the end of its input, but may be mid-measurement after an error.
        self.child.kill().ok();
        self.child.wait().ok();
    }
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
                padded: 0,
                weight: 1.0,
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
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (median, p99) = percentiles(&mut times);
        println!("candle training step (batch 64, 1 thread): median {median:.2} ms, p99 {p99:.2} ms");
        Ok(())
    })
}
