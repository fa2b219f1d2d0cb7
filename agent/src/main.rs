//! `gatewatch-agent`: the edge agent's command line.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use gatewatch_agent::capture::live::LiveOptions;
use gatewatch_agent::flow::label::Labeler;
use gatewatch_agent::flow::{FlowConfig, Mode};
use gatewatch_agent::pipeline::{self, Pace, RunSummary};
use gatewatch_proto::csv::{self, Layout};
use gatewatch_proto::FlowRecord;

#[derive(Parser, Debug)]
#[command(
    name = "gatewatch-agent",
    version,
    about = "gatewatch edge agent: packets in, CIC-IDS2017 flow features out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Extract flow features from a pcap or pcapng file (gzip allowed) into CSV.
    Features(FeaturesArgs),
    /// Capture live from an interface and print flows as they complete.
    Capture(CaptureArgs),
    /// Simulate an IoT network under attack as packets: a pcap, and optionally its
    /// labelled flow features (ground truth from the simulator, not from a model).
    Simulate(SimulateArgs),
    /// Score the flows of monitored devices with the detection model, from a capture file
    /// or a live interface: JSON lines of detections out, a summary on standard error.
    Score(ScoreArgs),
    /// Run the agent: capture (or replay, or simulate), detect, and report to the hub over
    /// MQTT, spooling to disk while the hub is unreachable. SIGTERM drains and exits.
    #[command(after_help = gatewatch_agent::config::KEYS_HELP)]
    Run(RunArgs),
    /// Enroll with a hub: trade a one-time token (from `gatewatch-hub agents token` or the
    /// API) for a client certificate, kept in the state directory. `run` then connects to the
    /// hub's broker over mutual TLS.
    Enroll(EnrollArgs),
}

#[derive(clap::Args, Debug)]
struct EnrollArgs {
    /// The hub's HTTP API, e.g. http://hub.example:8000.
    #[arg(long)]
    hub: String,
    /// The one-time enrollment token.
    #[arg(long, env = "GATEWATCH_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// SHA-256 fingerprint of the hub's CA, printed with the token. Without it the agent
    /// trusts whichever CA answers (only on a network you trust).
    #[arg(long)]
    ca_sha256: Option<String>,
    /// Configuration file (for state_dir and name), as for `run`.
    #[arg(long, env = "GATEWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Configuration file (TOML). Default: /etc/gatewatch/agent.toml if it exists, else the
    /// built-in defaults (simulated traffic, broker on 127.0.0.1:1883).
    #[arg(long, env = "GATEWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration and the model, print them, and exit.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct FlowArgs {
    /// Feature semantics: `correct` (documented definitions) or `cic2017` (the published
    /// dataset's quirks, for models trained on its CSVs).
    #[arg(long, default_value = "correct")]
    mode: Mode,
    /// In `correct` mode, flows with fewer packets are not written (cic2017 always uses 2).
    #[arg(long, default_value_t = 1)]
    min_packets: u32,
    /// Live flows kept at most; when full, the oldest flow is written early (counted).
    #[arg(long, default_value_t = 262_144)]
    max_flows: usize,
    /// Flow timeout counted from a flow's first packet.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    flow_timeout: Duration,
    /// In `correct` mode, a UDP, ICMP or other non-TCP flow ends after this long without a
    /// packet (0s: only the flow timeout ends it, as in cic2017).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
}

impl FlowArgs {
    fn config(&self) -> Result<FlowConfig> {
        anyhow::ensure!(self.max_flows > 0, "--max-flows must be at least 1");
        anyhow::ensure!(!self.flow_timeout.is_zero(), "--flow-timeout must be longer than 0s");
        Ok(FlowConfig {
            mode: self.mode,
            min_packets: self.min_packets,
            max_live_flows: self.max_flows,
            flow_timeout_ns: i64::try_from(self.flow_timeout.as_nanos()).context("--flow-timeout is too long")?,
            idle_timeout_ns: i64::try_from(self.idle_timeout.as_nanos()).context("--idle-timeout is too long")?,
            ..FlowConfig::default()
        })
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LayoutArg {
    /// The "MachineLearningCVE" layout: 78 features and Label.
    Ml,
    /// The "TrafficLabelling" layout: Flow ID, addresses, ports, protocol, timestamp first.
    Labelled,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Ml => Layout::MachineLearning,
            LayoutArg::Labelled => Layout::Labelled,
        }
    }
}

#[derive(clap::Args, Debug)]
struct FeaturesArgs {
    /// Capture file (pcap, nanosecond pcap or pcapng, optionally gzip-compressed).
    #[arg(long)]
    pcap: PathBuf,
    #[command(flatten)]
    flow: FlowArgs,
    /// Where to write the CSV (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// CSV column layout.
    #[arg(long, value_enum, default_value = "ml")]
    layout: LayoutArg,
    /// Text of the Label column (for flows not attributed to an attacker).
    #[arg(long, default_value = "BENIGN")]
    label: String,
    /// Address of an attacker (repeatable): flows with it at either end get --attack-label.
    #[arg(long = "attacker")]
    attackers: Vec<std::net::IpAddr>,
    /// Label for the attacker's flows.
    #[arg(long, default_value = "ATTACK")]
    attack_label: String,
    /// Only flows overlapping this window (Unix seconds, `START,END`) are the attacker's.
    #[arg(long, value_parser = parse_window)]
    attack_window: Option<(i64, i64)>,
    /// Feed packets at the capture's own timing, scaled by this factor (1 = real time).
    /// Without it, the file is read as fast as possible.
    #[arg(long)]
    replay_speed: Option<f64>,
}

#[derive(clap::Args, Debug)]
struct CaptureArgs {
    /// Interface to capture from (e.g. eth0).
    #[arg(long)]
    interface: String,
    /// BPF filter in tcpdump syntax, e.g. "tcp or udp".
    #[arg(long, default_value = "")]
    filter: String,
    /// Bytes kept per packet.
    #[arg(long, default_value_t = 65_535)]
    snaplen: i32,
    /// Do not put the interface into promiscuous mode.
    #[arg(long)]
    no_promisc: bool,
    #[command(flatten)]
    flow: FlowArgs,
    /// Stop after this long (default: until interrupted).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// Output: CSV lines (with header) or JSON lines with flow identity.
    #[arg(long, value_enum, default_value = "csv")]
    format: OutputFormat,
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Scenario: benign, ddos_flood (= ddos_flood:syn), ddos_flood:udp, ddos_flood:http,
    /// slow_rate, port_scan, brute_force_ssh, brute_force_ftp, botnet_beacon,
    /// data_exfiltration, web_xss, web_sqli, hybrid.
    #[arg(long, default_value = "benign")]
    attack: String,
    /// 0 (mildest) to 1 (strongest): scales the attack's rate or volume.
    #[arg(long, default_value_t = 0.5)]
    intensity: f64,
    /// Length of the simulated capture; the attack starts after a tenth of it (at most 5 s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The attacked IoT device; the gateway is .1 of its /24 and the attacker .66.
    #[arg(long, default_value = "192.168.1.20")]
    target: std::net::Ipv4Addr,
    /// Other IoT devices producing background traffic.
    #[arg(long, default_value_t = 4)]
    devices: u8,
    /// Attack traffic only, no background IoT traffic.
    #[arg(long)]
    no_benign: bool,
    /// Same seed and settings give byte-identical packets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Capture start, Unix seconds (default 2026-01-01T00:00:00Z, so output does not depend on the clock).
    #[arg(long)]
    start: Option<i64>,
    /// Where to write the packets (classic pcap, nanosecond timestamps).
    #[arg(long)]
    pcap: PathBuf,
    /// Also write the flows' features here, labelled from the simulator's ground truth.
    #[arg(long)]
    features: Option<PathBuf>,
    #[command(flatten)]
    flow: FlowArgs,
    /// CSV column layout of --features.
    #[arg(long, value_enum, default_value = "labelled")]
    layout: LayoutArg,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["pcap", "interface"])))]
struct ScoreArgs {
    /// Capture file to score (pcap, nanosecond pcap or pcapng, optionally gzip-compressed).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Or capture live from this interface.
    #[arg(long)]
    interface: Option<String>,
    /// Monitored devices as networks in CIDR form (repeatable or comma-separated), e.g.
    /// 192.168.1.0/24: each address inside is a device with its own window of 10 flows.
    #[arg(long, required = true, value_delimiter = ',')]
    devices: Vec<String>,
    /// Model directory (model.onnx, scaler.json, metadata.json). Default: ./models/default
    /// in a source checkout, else the packaged /usr/share/gatewatch-agent/model.
    #[arg(long, env = "GATEWATCH_MODEL_DIR")]
    model: Option<PathBuf>,
    /// Windows scored together in one tract run at most.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// With --interface: windows wait at most this long for their batch to fill.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    max_wait: Duration,
    /// A device with fewer than 10 flows is scored on a padded window once it has had no
    /// new flow for this long (in the capture's time for files), and at the end of a file;
    /// 0s: only at the end.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    partial_after: Duration,
    /// With --interface: stop after this long (default: until interrupted).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print only the windows scored as attacks.
    #[arg(long)]
    attacks_only: bool,
    /// Where to write the JSON lines (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sets up logging from its configuration file.
    if !matches!(cli.command, Command::Run(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_writer(io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Features(args) => features(args),
        Command::Capture(args) => capture(args),
        Command::Simulate(args) => simulate(args),
        Command::Score(args) => score(args),
        Command::Run(args) => run_agent(args),
        Command::Enroll(args) => enroll(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatewatch-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `START,END` in Unix seconds (fractions allowed) to nanoseconds.
fn parse_window(text: &str) -> Result<(i64, i64), String> {
    let (start, end) = text.split_once(',').ok_or("expected START,END in Unix seconds")?;
    let secs = |s: &str| s.trim().parse::<f64>().map_err(|e| format!("{s:?}: {e}"));
    let (start, end) = (secs(start)?, secs(end)?);
    if !(start.is_finite() && end.is_finite() && start <= end) {
        return Err("START must not be after END".into());
    }
    Ok(((start * 1e9) as i64, (end * 1e9) as i64))
}

fn output(path: Option<&PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("{}: cannot create", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    })
}

fn report(summary: &RunSummary, done: bool) {
    let t = &summary.table;
    let d = &summary.decode;
    eprintln!(
        "{} packets {} ({:.0} pkt/s), flows written {} live {} evicted {}, skipped frames {} (non-IP {}, malformed {}, unmatched fragments {})",
        if done { "done:" } else { "progress:" },
        summary.read.frames,
        summary.packets_per_second(),
        t.flows_emitted,
        t.live,
        t.evicted,
        d.skipped(),
        d.not_ip,
        d.malformed,
        d.unmatched_fragments,
    );
}

fn features(args: FeaturesArgs) -> Result<()> {
    let config = args.flow.config()?;
    let pace = match args.replay_speed {
        Some(speed) if speed > 0.0 && speed.is_finite() => Pace::Original { speed },
        Some(speed) => anyhow::bail!("--replay-speed must be a positive number, got {speed}"),
        None => Pace::Fastest,
    };
    let layout = Layout::from(args.layout);
    let labeler = Labeler {
        default_label: args.label.clone(),
        attack_label: args.attack_label.clone(),
        attackers: args.attackers.clone(),
        window_ns: args.attack_window,
    };
    let mut out = output(args.out.as_ref())?;
    csv::write_header(&mut out, layout)?;
    let mut write_error: Option<io::Error> = None;
    let mut emit = |rec: FlowRecord| {
        if write_error.is_none() {
            if let Err(e) = csv::write_record(&mut out, layout, &rec, labeler.label(&rec)) {
                write_error = Some(e);
            }
        }
    };
    let (summary, result) = pipeline::run_file(&args.pcap, config, pace, &mut emit, |s| report(s, false));
    if let Some(e) = write_error {
        return Err(e).context("writing flows");
    }
    out.flush().context("writing flows")?;
    if let Err(e) = result {
        if summary.table.flows_emitted > 0 {
            eprintln!(
                "gatewatch-agent: wrote the {} flows read before that point",
                summary.table.flows_emitted
            );
        }
        return Err(e.into());
    }
    report(&summary, true);
    Ok(())
}

fn capture(args: CaptureArgs) -> Result<()> {
    let config = args.flow.config()?;
    let options = LiveOptions {
        interface: args.interface.clone(),
        filter: args.filter.clone(),
        snaplen: args.snaplen,
        promiscuous: !args.no_promisc,
        ..LiveOptions::default()
    };
    let mut out = io::stdout().lock();
    if args.format == OutputFormat::Csv {
        csv::write_header(&mut out, Layout::Labelled)?;
    }
    let mut write_error: Option<io::Error> = None;
    let format = args.format;
    let mut emit = |rec: FlowRecord| {
        let written = match format {
            OutputFormat::Csv => csv::write_record(&mut out, Layout::Labelled, &rec, ""),
            OutputFormat::Json => serde_json::to_writer(&mut out, &rec)
                .map_err(io::Error::other)
                .and_then(|()| writeln!(out)),
        }
        .and_then(|()| out.flush());
        if let Err(e) = written {
            write_error.get_or_insert(e);
        }
    };
    let duration = args.duration;
    let count = args.count;
    let (summary, stats) = pipeline::run_live(&options, config, &mut emit, |s| {
        duration.is_some_and(|d| s.elapsed >= d) || count.is_some_and(|c| s.read.frames >= c)
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing flows");
    }
    report(&summary, true);
    eprintln!(
        "libpcap: received {} dropped {} interface-dropped {}",
        stats.received, stats.dropped, stats.if_dropped
    );
    Ok(())
}

fn simulate(args: SimulateArgs) -> Result<()> {
    use gatewatch_agent::capture::sim::{self, AttackType, SimConfig};
    use gatewatch_agent::pipeline::Extractor;

    let attack = AttackType::parse_scenario(&args.attack)?;
    let mut cfg = SimConfig::new(args.target);
    cfg.attack = attack;
    cfg.intensity = args.intensity;
    cfg.duration = args.duration;
    cfg.devices = args.devices;
    cfg.benign = !args.no_benign;
    cfg.seed = args.seed;
    if let Some(start) = args.start {
        cfg.start_ns = start.checked_mul(1_000_000_000).context("--start is out of range")?;
    }
    let flow_config = args.flow.config()?;
    let simulation = sim::simulate(&cfg)?;
    let file = File::create(&args.pcap).with_context(|| format!("{}: cannot create", args.pcap.display()))?;
    sim::write_pcap(BufWriter::new(file), &simulation.frames)
        .with_context(|| format!("{}: writing packets", args.pcap.display()))?;
    let truth = &simulation.truth;
    eprintln!(
        "simulated {} packets of {} to {}; attackers {:?}",
        simulation.frames.len(),
        attack.map_or_else(|| "benign traffic".to_string(), |a| a.to_string()),
        args.pcap.display(),
        truth.attackers,
    );
    if let Some((from, until)) = truth.window_ns {
        eprintln!(
            "attack window {:.3}..{:.3} (Unix seconds)",
            from as f64 / 1e9,
            until as f64 / 1e9
        );
    }
    let Some(path) = args.features.as_ref() else {
        return Ok(());
    };
    // One labeler per phase, so the stages of `hybrid` keep their own names.
    let phases: Vec<Labeler> = truth
        .phases
        .iter()
        .map(|phase| Labeler {
            default_label: "BENIGN".into(),
            attack_label: phase.attack.to_string(),
            attackers: phase.attackers.clone(),
            window_ns: Some(phase.window_ns),
        })
        .collect();
    let label = |rec: &FlowRecord| {
        phases
            .iter()
            .find(|l| l.is_attack(rec))
            .map_or("BENIGN", |l| l.label(rec))
    };
    let layout = Layout::from(args.layout);
    let mut out = output(Some(path))?;
    csv::write_header(&mut out, layout)?;
    let (mut flows, mut attack_flows) = (0u64, 0u64);
    let mut write_error: Option<io::Error> = None;
    let mut emit = |rec: FlowRecord| {
        flows += 1;
        let label = label(&rec);
        attack_flows += u64::from(label != "BENIGN");
        if let Err(e) = csv::write_record(&mut out, layout, &rec, label) {
            write_error.get_or_insert(e);
        }
    };
    let mut extractor = Extractor::new(flow_config);
    extractor.run_frames(&simulation.frames, &mut emit);
    if let Some(e) = write_error {
        return Err(e).context("writing flows");
    }
    out.flush().context("writing flows")?;
    let evicted = extractor.table_stats().evicted;
    eprintln!(
        "wrote {flows} flows ({attack_flows} attack) to {}{}",
        path.display(),
        if evicted > 0 {
            format!("; {evicted} flows ended early because --max-flows was reached")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn score(args: ScoreArgs) -> Result<()> {
    use gatewatch_agent::detect::{DetectConfig, Detector};
    use gatewatch_models::data::Network;
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::time::Instant;

    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let networks = args
        .devices
        .iter()
        .map(|d| d.trim().parse::<Network>())
        .collect::<Result<Vec<_>, _>>()
        .context("--devices takes networks like 192.168.1.0/24 or 2001:db8::/32")?;
    let flow_config = args.flow.config()?;
    let dir = gatewatch_agent::run::model_dir(args.model.as_deref()).ok_or_else(|| {
        anyhow::anyhow!(
            "no model found in ./models/default or /usr/share/gatewatch-agent/model: pass --model DIR (or set GATEWATCH_MODEL_DIR)"
        )
    })?;
    let model =
        gatewatch_models::score::Model::load_with(&dir, gatewatch_models::score::LoadOptions { batch: args.batch })
            .with_context(|| format!("{}: cannot load the model", dir.display()))?;
    eprintln!(
        "model {} from {}, devices {}",
        model.metadata().model_version,
        dir.display(),
        args.devices.join(",")
    );
    let mut config = DetectConfig::new(networks);
    config.batch = args.batch;
    config.partial_after_ns = i64::try_from(args.partial_after.as_nanos()).context("--partial-after is too long")?;
    let detector = RefCell::new(Detector::new(Arc::new(model), config));
    let mut out = output(args.out.as_ref())?;
    let mut failure: Option<anyhow::Error> = None;
    let attacks_only = args.attacks_only;
    let mut write = |d: gatewatch_proto::Detection| {
        if attacks_only && !d.is_attack() {
            return;
        }
        let written = serde_json::to_writer(&mut out, &d)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out));
        if let Err(e) = written {
            failure.get_or_insert(anyhow::Error::new(e).context("writing detections"));
        }
    };
    let started = Instant::now();
    let mut model_error: Option<gatewatch_models::Error> = None;
    let summary = if let Some(pcap) = &args.pcap {
        let mut emit = |rec: FlowRecord| {
            if let Err(e) = detector.borrow_mut().push(&rec, &mut write) {
                model_error.get_or_insert(e);
            }
        };
        let (summary, result) = pipeline::run_file(pcap, flow_config, Pace::Fastest, &mut emit, |s| report(s, false));
        if let Err(e) = detector.borrow_mut().finish(&mut write) {
            model_error.get_or_insert(e);
        }
        if let Err(e) = result {
            failure.get_or_insert(e.into());
        }
        summary
    } else {
        let options = LiveOptions {
            interface: args.interface.clone().unwrap_or_default(),
            ..LiveOptions::default()
        };
        let write = RefCell::new(write);
        let model_error = RefCell::new(None);
        let flush = || {
            let mut detector = detector.borrow_mut();
            let mut write = write.borrow_mut();
            if let Err(e) = detector.tick(&mut *write).and_then(|()| detector.flush(&mut *write)) {
                model_error.borrow_mut().get_or_insert(e);
            }
        };
        let finish = || {
            if let Err(e) = detector.borrow_mut().finish(&mut *write.borrow_mut()) {
                model_error.borrow_mut().get_or_insert(e);
            }
        };
        let mut emit = |rec: FlowRecord| {
            if let Err(e) = detector.borrow_mut().push(&rec, &mut *write.borrow_mut()) {
                model_error.borrow_mut().get_or_insert(e);
            }
        };
        let duration = args.duration;
        let max_wait = args.max_wait;
        let mut last_flush = Instant::now();
        let (summary, _stats) = pipeline::run_live(&options, flow_config, &mut emit, |s| {
            // Ready windows wait at most --max-wait for the rest of their batch.
            if last_flush.elapsed() >= max_wait {
                last_flush = Instant::now();
                flush();
            }
            duration.is_some_and(|d| s.elapsed >= d)
        })?;
        finish();
        if let Some(e) = model_error.into_inner() {
            failure.get_or_insert(anyhow::Error::new(e).context("scoring"));
        }
        summary
    };
    out.flush().context("writing detections")?;
    let stats = detector.borrow().stats();
    report(&summary, true);
    let per_family: Vec<String> = gatewatch_models::FAMILIES
        .iter()
        .zip(stats.attacks_per_family)
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| format!("{}={n}", f.name()))
        .collect();
    eprintln!(
        "scored {} windows ({} partial) of {} devices in {} batches ({:.1} ms in tract, {:.0} windows/s overall): {} attack windows{}{}",
        stats.scored,
        stats.scored_partial,
        stats.windows.devices,
        stats.batches,
        stats.inference_seconds * 1e3,
        stats.scored as f64 / started.elapsed().as_secs_f64().max(1e-9),
        stats.attacks,
        if per_family.is_empty() {
            String::new()
        } else {
            format!(" ({})", per_family.join(", "))
        },
        if stats.windows.flows_over_device_cap > 0 {
            format!("; {} flows of devices over the cap were not scored", stats.windows.flows_over_device_cap)
        } else {
            String::new()
        },
    );
    if let Some(e) = model_error {
        return Err(e).context("scoring");
    }
    failure.map_or(Ok(()), Err)
}

/// SIGHUP: reads the configuration again and applies what can change while running (the log
/// filter and the monitored devices); a file that does not validate changes nothing.
fn reload(
    path: Option<&std::path::Path>,
    running: &gatewatch_agent::config::AgentConfig,
    log_filter: &tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
    pipeline: &std::sync::mpsc::Sender<gatewatch_agent::run::PipelineUpdate>,
) {
    let fresh = match gatewatch_agent::config::AgentConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration does not validate; nothing changed");
            return;
        }
    };
    match tracing_subscriber::EnvFilter::try_new(&fresh.log) {
        Ok(filter) if fresh.log != running.log => {
            let _ = log_filter.reload(filter);
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "SIGHUP: log filter not valid; kept the old one"),
    }
    if fresh.detect.devices != running.detect.devices {
        if let Ok(networks) = fresh.networks() {
            let _ = pipeline.send(gatewatch_agent::run::PipelineUpdate::Devices(networks));
        }
    }
    let mut needs_restart = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            needs_restart.push(key);
        }
    };
    differs("hub", fresh.hub != running.hub);
    differs("source", fresh.source != running.source);
    differs("state_dir", fresh.state_dir != running.state_dir);
    differs("flow", fresh.flow != running.flow);
    differs("uplink", fresh.uplink != running.uplink);
    differs("spool", fresh.spool != running.spool);
    differs("metrics_listen", fresh.metrics_listen != running.metrics_listen);
    differs("detect.model_dir/batch/max_wait_ms/partial_after_ms", {
        let (a, b) = (&fresh.detect, &running.detect);
        a.model_dir != b.model_dir
            || a.batch != b.batch
            || a.max_wait_ms != b.max_wait_ms
            || a.partial_after_ms != b.partial_after_ms
    });
    if needs_restart.is_empty() {
        tracing::info!("SIGHUP: configuration reloaded");
    } else {
        tracing::warn!(keys = ?needs_restart, "SIGHUP: configuration reloaded; these changes take effect at the next start");
    }
}

/// The configuration file `run` and `enroll` use: the one given, else the system one if present.
fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    let default_path = PathBuf::from("/etc/gatewatch/agent.toml");
    given.or_else(|| default_path.is_file().then_some(default_path))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn enroll(args: EnrollArgs) -> Result<()> {
    use gatewatch_agent::config::AgentConfig;
    use gatewatch_agent::run::persistent_id;
    use gatewatch_agent::uplink::identity::{self, EnrollParams};

    let config = AgentConfig::load(config_path(args.config).as_deref())?;
    let ca_sha256 = match &args.ca_sha256 {
        Some(typed) => Some(
            gatewatch_proto::enroll::normalise_fingerprint(typed)
                .context("--ca-sha256 must be 64 hex digits (colons and spaces allowed)")?,
        ),
        None => {
            eprintln!("warning: no --ca-sha256; trusting the CA the hub sends");
            None
        }
    };
    let agent_id = persistent_id(&config.state_dir.join("agent_id"))?;
    let hostname = hostname();
    let params = EnrollParams {
        hub_url: args.hub,
        token: args.token,
        ca_sha256,
        agent_id,
        name: config.name.clone().unwrap_or_else(|| hostname.clone()),
        hostname,
    };
    let id = identity::enroll(&config.state_dir, &params).context("enrollment failed")?;
    identity::give_to_state_dir_owner(&config.state_dir)
        .with_context(|| format!("handing {} to its owner", config.state_dir.display()))?;
    println!(
        "enrolled as agent {} (identity in {})",
        id.agent_id,
        config.state_dir.join("identity").display()
    );
    match &config.hub.mqtt_url {
        Some(url) => println!("hub.mqtt_url is set to {url}; the hub's broker is {}", id.mqtt_url),
        None => println!("`gatewatch-agent run` will connect to {}", id.mqtt_url),
    }
    Ok(())
}

fn run_agent(args: RunArgs) -> Result<()> {
    use gatewatch_agent::config::AgentConfig;
    use gatewatch_agent::run::{self, persistent_id};
    use gatewatch_agent::uplink::{mqtt, Sender, SenderConfig, Spool};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let path = config_path(args.config);
    let config = AgentConfig::load(path.as_deref())?;
    // The log filter can be changed by a reload (SIGHUP).
    let (filter, log_filter) = tracing_subscriber::reload::Layer::new(
        tracing_subscriber::EnvFilter::try_new(&config.log).context("config key `log`")?,
    );
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(io::stderr)
                    .with_ansi(io::IsTerminal::is_terminal(&io::stderr())),
            )
            .init();
    }
    let model = Arc::new(run::load_model(&config)?);
    let version = model.metadata().model_version.clone();
    if args.check {
        println!(
            "config: {}",
            path.as_ref().map_or("(defaults)".into(), |p| p.display().to_string())
        );
        let identity = gatewatch_agent::uplink::identity::Identity::load(&config.state_dir)?;
        println!(
            "broker: {}",
            config.broker(identity.as_ref().map(|i| i.mqtt_url.as_str()))?
        );
        match identity {
            Some(id) => println!("enrolled as: {}", id.agent_id),
            None => println!("enrolled: no"),
        }
        println!("devices: {}", config.detect.devices.join(", "));
        println!("model: {version}");
        println!("configuration is valid");
        return Ok(());
    }
    let identity = gatewatch_agent::uplink::identity::Identity::load(&config.state_dir)?;
    let broker = config.broker(identity.as_ref().map(|i| i.mqtt_url.as_str()))?;
    let tls = match (&identity, broker.tls) {
        (Some(id), true) => Some(Arc::new(id.tls_config()?)),
        (None, true) => anyhow::bail!(
            "hub.mqtt_url is {broker}, which needs this agent's certificate: run `gatewatch-agent enroll` first"
        ),
        (_, false) => None,
    };
    let agent_id = match &identity {
        Some(id) => id.agent_id,
        None => persistent_id(&config.state_dir.join("agent_id"))?,
    };
    let spool_dir = config.state_dir.join("spool");
    let epoch = persistent_id(&spool_dir.join("epoch"))?;
    let spool = Spool::open(&spool_dir, config.spool_config()).context("opening the spool")?;
    if !spool.is_empty() {
        tracing::info!(
            batches = spool.stats().pending_records,
            "spooled batches from an earlier run will be sent"
        );
    }
    let sender = Sender::new(
        agent_id,
        epoch,
        spool,
        SenderConfig {
            batch_max: config.uplink.batch_max,
            batch_wait: Duration::from_millis(config.uplink.batch_wait_ms),
            in_flight: config.uplink.in_flight,
            resend_after: Duration::from_secs(config.uplink.resend_after_secs),
        },
    );
    let hostname = hostname();
    let metrics = Arc::new(gatewatch_agent::metrics::AgentMetrics::default());
    let link = mqtt::LinkConfig {
        broker: broker.clone(),
        tls,
        agent_id,
        name: config.name.clone().unwrap_or_else(|| hostname.clone()),
        hostname,
        heartbeat: Duration::from_secs(u64::from(config.hub.heartbeat_secs)),
        drain_timeout: Duration::from_secs(config.uplink.drain_secs),
        metrics: metrics.clone(),
    };
    tracing::info!(%agent_id, name = %link.name, model = %version, source = ?config.source.kind, "agent starting");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let model_version = tokio::sync::watch::Sender::new(Some(version));
    let (updates_tx, updates_rx) = std::sync::mpsc::channel();
    // Rollouts come over QUIC, which needs the enrolled identity.
    let rollout = match &identity {
        Some(id) if broker.tls => {
            let _guard = runtime.enter();
            let client = gatewatch_agent::uplink::bulk::BulkClient::new(id, &broker.host, id.quic_port)
                .context("setting up QUIC to the hub")?;
            Some(Arc::new(gatewatch_agent::uplink::rollout::Rollout {
                client: Arc::new(client),
                models_dir: config.state_dir.join("models"),
                load: gatewatch_models::score::LoadOptions {
                    batch: config.detect.batch,
                },
                to_pipeline: updates_tx.clone(),
            }))
        }
        _ => None,
    };
    // Federated learning needs the identity too: updates and keys go over QUIC, signed.
    let fl = match (&identity, &rollout) {
        (Some(id), Some(r)) if config.fl.enabled => {
            let _guard = runtime.enter();
            let flow_config = gatewatch_agent::flow::FlowConfig {
                mode: config.mode()?,
                ..Default::default()
            };
            let client = gatewatch_agent::fl::Client::start(
                &config.state_dir,
                &r.models_dir,
                id.clone(),
                r.client.clone(),
                config.fl.clone(),
                flow_config,
                metrics.clone(),
            )
            .map_err(|e| anyhow::anyhow!("federated learning: {e}"))?;
            let published = client.clone();
            runtime.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(10));
                loop {
                    every.tick().await;
                    published.publish_composition();
                }
            });
            Some(client)
        }
        _ => None,
    };
    let commands = gatewatch_agent::uplink::commands::Commands::new(
        &config.state_dir,
        updates_tx.clone(),
        rollout.as_ref().map(|r| r.client.clone()),
    )
    .with_context(|| {
        format!(
            "state_dir {}: reading the hub's start/stop choices",
            config.state_dir.display()
        )
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let signalled = stop.clone();
    let (reload_path, running) = (path.clone(), config.clone());
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(reload_path.as_deref(), &running, &log_filter, &updates_tx),
            }
        }
        tracing::info!("stopping: draining to the hub");
        signalled.store(true, Ordering::Relaxed);
    });
    if let Some(addr) = config.metrics_addr()? {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("metrics_listen: cannot listen on {addr} (set another address, or \"off\")"))?;
        runtime.spawn(gatewatch_agent::metrics::serve(listener, metrics.clone()));
        tracing::info!(%addr, "metrics endpoint listening");
    }
    // Flow records go up over the same QUIC connection as model downloads.
    let mut flow_upload = None;
    let tap = match &rollout {
        Some(r) if config.uplink.flow_records => {
            let source = match config.source.kind {
                gatewatch_agent::config::SourceKind::Interface => gatewatch_proto::bulk::FlowSource::Live,
                gatewatch_agent::config::SourceKind::Pcap => gatewatch_proto::bulk::FlowSource::Pcap,
                gatewatch_agent::config::SourceKind::Simulator => gatewatch_proto::bulk::FlowSource::Simulated,
            };
            let (tap, queue) = gatewatch_agent::uplink::flows::FlowTap::new(source);
            flow_upload = Some(runtime.spawn(gatewatch_agent::uplink::flows::upload(
                r.client.clone(),
                queue,
                metrics.clone(),
            )));
            Some(tap)
        }
        _ => None,
    };
    let flows_dropped = tap.as_ref().map(|t| t.dropped.clone());
    // The hub (broker and QUIC share its host) and the gateway itself are never blocked.
    let mut prevent = config.prevent_config(&[broker.host.as_str()])?;
    prevent.protected.extend(gatewatch_agent::prevent::own_addresses());
    let (attack_tx, attack_rx) = tokio::sync::mpsc::unbounded_channel();
    let links = run::PipelineLinks {
        detections: tx,
        prevent,
        updates: updates_rx,
        flows: tap,
        metrics: metrics.clone(),
        attack_reports: attack_tx,
        fl_tap: fl.as_ref().map(|f| f.tap()),
    };
    let pipeline_config = config.clone();
    let pipeline = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || run::pipeline(&pipeline_config, model, links, stop))
        .context("starting the pipeline thread")?;
    let uplink = runtime.block_on(mqtt::run(
        link,
        sender,
        rx,
        attack_rx,
        model_version,
        mqtt::Orders { rollout, commands, fl },
    ));
    let pipeline = pipeline
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
    let uplink = uplink.context("uplink")?;
    let pipeline = pipeline?;
    if let Some(task) = flow_upload {
        // The pipeline has closed the queue; what is left goes up once more.
        match runtime.block_on(async { tokio::time::timeout(Duration::from_secs(15), task).await }) {
            Ok(Ok(f)) => eprintln!(
                "flow records: uploaded {}, dropped (queue full) {}, unsent {}, failed attempts {}",
                f.uploaded,
                flows_dropped.map_or(0, |d| d.load(Ordering::Relaxed)),
                f.unsent,
                f.failed_attempts
            ),
            _ => eprintln!("flow records: the last upload did not finish"),
        }
    }
    let s = uplink.sender;
    eprintln!(
        "done: packets {} flows {} windows scored {} (attacks {}), detections sent in {} batches, acknowledged {}, still spooled {} (dropped: new {}, old {}, corrupt {}), reconnects {}",
        pipeline.packets,
        pipeline.flows,
        pipeline.detect.scored,
        pipeline.detect.attacks,
        s.batches_spooled,
        s.acked_batches,
        s.spool.pending_records,
        s.spool.dropped_new,
        s.spool.dropped_old,
        s.spool.corrupt,
        uplink.connects.saturating_sub(1),
    );
    Ok(())
}
