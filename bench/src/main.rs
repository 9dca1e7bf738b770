//! `tertulia-bench`: one load generator for Tertulia and the servers people would otherwise
//! relay chat with (Redis pub/sub, NATS, ngIRCd). See `bench/README.md`.
//!
//! `tertulia-bench run …` measures one configuration and prints a JSON object;
//! `tertulia-bench matrix --preset full|quick` runs the matrix (targets interleaved,
//! repetitions) and writes `bench/results/` (runs.jsonl, results.md, chart.png).

mod chart;
mod files;
mod payload;
mod procfs;
mod record;
mod servers;
mod targets;

use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use tokio::task::LocalSet;

use record::Recorder;
use targets::{Flow, Sender};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Tertulia,
    Redis,
    Nats,
    Irc,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// As fast as possible, at most this many of a client's messages in flight.
    Window(u64),
    /// Open loop: messages per second per client.
    Rate(f64),
    /// Connect, join and sit idle.
    Idle,
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub clients: usize,
    pub messages: u64,
    pub size: usize,
    pub mode: Mode,
}

#[derive(Parser)]
#[command(
    version,
    about = "Fan-out benchmark: Tertulia vs Redis pub/sub, NATS and ngIRCd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one configuration; prints one JSON object.
    Run {
        #[arg(long, value_enum)]
        target: Target,
        /// Clients in the room.
        #[arg(long, short = 'n', default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        clients: u64,
        /// Messages each client sends.
        #[arg(long, short = 'm', default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        messages: u64,
        /// Payload bytes.
        #[arg(long, short = 'b', default_value_t = 128, value_parser = clap::value_parser!(u64).range(35..=8192))]
        size: u64,
        /// Window mode: at most W of a client's messages in flight.
        #[arg(long, conflicts_with_all = ["rate", "idle"], value_parser = clap::value_parser!(u64).range(1..=100_000))]
        window: Option<u64>,
        /// Rate mode: messages per second per client (open loop).
        #[arg(long, conflicts_with = "idle")]
        rate: Option<f64>,
        /// Idle mode: connect, join and sit idle (server RSS per connection).
        #[arg(long)]
        idle: bool,
        /// Pin the server to CPU 0 (run the generator itself with `taskset -c 1`).
        #[arg(long)]
        pin: bool,
    },
    /// Full version-2 handshakes per second on one core (one thread, both sides in this
    /// process: client start, server response, client check), and the server's side alone.
    /// Prints one JSON object; no network, no KDF (the room secret is derived once).
    Handshakes {
        /// Seconds to measure each figure for.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
    },
    /// One member sends a file that `receivers` members fetch while two others chat: upload
    /// and fan-out MB/s, the host's CPU, and the chat latency meanwhile. Prints one JSON object.
    Files {
        /// Size of the file, MiB.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100))]
        mib: u64,
        /// Members fetching it.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
        receivers: u64,
    },
    /// Run a matrix of configurations and write bench/results/.
    Matrix {
        #[arg(long, value_enum, default_value_t = Preset::Full)]
        preset: Preset,
        /// Directory for runs.jsonl, results.md and chart.png.
        #[arg(long, default_value = "bench/results")]
        out: std::path::PathBuf,
        /// Only these targets (default: all four).
        #[arg(long, value_enum, value_delimiter = ',')]
        targets: Vec<Target>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// N ∈ {10, 100, 500}, window 64 and 10 msg/s, 3 repetitions, idle 10 000.
    Full,
    /// About a minute: N = 100 window and rate, idle 1 000, one repetition.
    Quick,
}

/// One run's figures (one JSON object).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub target: Target,
    pub clients: usize,
    pub messages: u64,
    pub size: usize,
    pub mode: String,
    pub expected: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub corrupt: u64,
    pub duration_s: f64,
    pub deliveries_per_s: f64,
    pub latency_us: Percentiles,
    pub lag_us: Option<Percentiles>,
    pub server_cpu_s: f64,
    pub server_rss_before: u64,
    pub server_rss_after: u64,
    pub server_rss_peak: u64,
    pub loadgen_cpu_s: f64,
    pub rss_per_connection: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

fn mode_name(mode: Mode) -> String {
    match mode {
        Mode::Window(w) => format!("window {w}"),
        Mode::Rate(r) => format!("rate {r}/s"),
        Mode::Idle => "idle".into(),
    }
}

/// How long a run may go without a delivery before the rest counts as lost.
const STALL: Duration = Duration::from_secs(10);

/// Measure one configuration.
pub fn run_one(cfg: RunConfig, pin: bool) -> RunResult {
    let mut result = RunResult {
        target: cfg.target,
        clients: cfg.clients,
        messages: cfg.messages,
        size: cfg.size,
        mode: mode_name(cfg.mode),
        expected: match cfg.mode {
            Mode::Idle => 0,
            _ => (cfg.clients as u64) * (cfg.clients as u64 - 1) * cfg.messages,
        },
        deliveries: 0,
        lost: 0,
        out_of_order: 0,
        corrupt: 0,
        duration_s: 0.0,
        deliveries_per_s: 0.0,
        latency_us: Percentiles::default(),
        lag_us: None,
        server_cpu_s: 0.0,
        server_rss_before: 0,
        server_rss_after: 0,
        server_rss_peak: 0,
        loadgen_cpu_s: 0.0,
        rss_per_connection: None,
        error: None,
    };
    let server = match servers::start(cfg.target, pin.then_some(0)) {
        Ok(server) => server,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    // Let a freshly started server settle (Tertulia derives its key at start).
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.pid();
    let empty_rss = procfs::rss_bytes(&pid).unwrap_or(0);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let local = LocalSet::new();
    let outcome = local.block_on(
        &runtime,
        drive(cfg.clone(), server.port, &pid, empty_rss, &mut result),
    );
    if let Err(e) = outcome {
        result.error = Some(e);
    }
    result.server_rss_peak = procfs::peak_rss_bytes(&pid).unwrap_or(0);
    drop(server);
    result
}

async fn drive(
    cfg: RunConfig,
    port: u16,
    pid: &str,
    empty_rss: u64,
    result: &mut RunResult,
) -> Result<(), String> {
    let cfg = Rc::new(cfg);
    let base = Instant::now();
    let rec = Recorder::new(base, cfg.clients);
    let opened = targets::tertulia::SharedOpened::default();
    let permits = Rc::new(tokio::sync::Semaphore::new(64));

    // Connect and join everyone first. Idle clients start reading as soon as they are in.
    let idle_errors: Rc<std::cell::RefCell<Vec<String>>> = Rc::default();
    let mut joins: Vec<tokio::task::JoinHandle<Result<Option<Conn>, String>>> = Vec::new();
    for id in 0..cfg.clients {
        let permits = permits.clone();
        let opened = opened.clone();
        let target = cfg.target;
        let idle = cfg.mode == Mode::Idle;
        let idle_errors = idle_errors.clone();
        joins.push(tokio::task::spawn_local(async move {
            let _permit = permits.acquire().await;
            let conn = match target {
                Target::Tertulia => targets::tertulia::connect(port, id, &opened)
                    .await
                    .map(Conn::Tertulia),
                Target::Redis => targets::redis::connect(port).await.map(Conn::Redis),
                Target::Nats => targets::nats::connect(port, id).await.map(Conn::Nats),
                Target::Irc => targets::irc::connect(port, id).await.map(Conn::Irc),
            };
            let conn = conn.map_err(|e| format!("client {id}: {e}"))?;
            if idle {
                tokio::task::spawn_local(async move {
                    if let Err(e) = conn.sit_idle().await {
                        idle_errors.borrow_mut().push(format!("client {id}: {e}"));
                    }
                });
                return Ok(None);
            }
            Ok(Some(conn))
        }));
    }
    let mut conns = Vec::with_capacity(cfg.clients);
    for join in joins {
        conns.extend(join.await.map_err(|e| e.to_string())??);
    }
    if cfg.mode == Mode::Idle {
        // Measure once the server has delivered every join notice and gone quiet.
        let settled = server_goes_quiet(pid, Duration::from_secs(120)).await;
        result.server_rss_before = procfs::rss_bytes(pid).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        result.server_rss_after = procfs::rss_bytes(pid).unwrap_or(0);
        result.rss_per_connection =
            Some(result.server_rss_after.saturating_sub(empty_rss) as f64 / cfg.clients as f64);
        if let Some(e) = idle_errors.borrow().first() {
            return Err(e.clone());
        }
        return settled;
    }
    // Let join notices settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    result.server_rss_before = procfs::rss_bytes(pid).unwrap_or(0);
    let cpu0 = procfs::cpu_seconds(pid).unwrap_or(0.0);
    let gen0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let start = Instant::now();
    rec.borrow_mut().reset_last_delivery(start);
    let mut tasks = Vec::new();
    let mut flows = Vec::new();
    for (id, conn) in conns.into_iter().enumerate() {
        let flow = Rc::new(Flow::default());
        flows.push(flow.clone());
        let sender = Sender::new(id as u32, cfg.clone(), rec.clone(), start);
        let (cfg, rec, opened) = (cfg.clone(), rec.clone(), opened.clone());
        tasks.push(Some(tokio::task::spawn_local(async move {
            let outcome = match conn {
                Conn::Tertulia(c) => {
                    targets::tertulia::run(id, c, cfg, rec, opened, flow, sender).await
                }
                Conn::Redis(c) => targets::redis::run(id, c, cfg, rec, flow, sender).await,
                Conn::Nats(c) => targets::nats::run(id, c, cfg, rec, flow, sender).await,
                Conn::Irc(c) => targets::irc::run(id, c, cfg, rec, flow, sender).await,
            };
            outcome.map_err(|e| format!("client {id}: {e}"))
        })));
    }
    // Wait for every delivery, or until nothing arrives for a while.
    let mut first_error = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let finished = {
            let r = rec.borrow();
            r.deliveries >= result.expected || r.last_delivery().elapsed() > STALL
        };
        if finished {
            break;
        }
        for slot in tasks.iter_mut() {
            if slot.as_ref().is_some_and(|t| t.is_finished()) {
                if let Some(task) = slot.take() {
                    let error = match task.await {
                        Ok(Err(e)) => e,
                        Err(e) => format!("client task failed: {e}"),
                        Ok(Ok(())) => "a client's connection closed".into(),
                    };
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    if std::env::var_os("BENCH_DEBUG").is_some() {
        for (i, f) in flows.iter().enumerate() {
            eprintln!(
                "client {i}: acked {}, frames {}, unparsed bytes {}",
                f.acked.get(),
                f.frames.get(),
                f.pending_bytes.get()
            );
        }
        eprintln!("per receiver: {:?}", rec.borrow().per_receiver());
    }
    for task in tasks.iter().flatten() {
        task.abort();
    }
    let r = rec.borrow();
    let end = r.last_delivery();
    result.deliveries = r.deliveries;
    result.lost = result.expected.saturating_sub(r.deliveries);
    result.out_of_order = r.out_of_order;
    result.corrupt = r.corrupt;
    result.duration_s = end.saturating_duration_since(start).as_secs_f64();
    result.deliveries_per_s = r.deliveries as f64 / result.duration_s.max(1e-9);
    result.latency_us = Percentiles::of(&r.latency);
    if matches!(cfg.mode, Mode::Rate(_)) {
        result.lag_us = Some(Percentiles::of(&r.lag));
    }
    result.server_cpu_s = procfs::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    result.loadgen_cpu_s = procfs::cpu_seconds("self").unwrap_or(0.0) - gen0;
    result.server_rss_after = procfs::rss_bytes(pid).unwrap_or(0);
    if let Some(e) = first_error {
        result.error = Some(e);
    }
    Ok(())
}

/// A connected, joined client of any target.
enum Conn {
    Tertulia(targets::tertulia::Connected),
    Redis(targets::redis::Connected),
    Nats(targets::nats::Connected),
    Irc(targets::irc::Connected),
}

impl Conn {
    /// Stay connected without sending, reading what the server sends, until it closes.
    async fn sit_idle(self) -> Result<(), targets::ClientError> {
        match self {
            Conn::Tertulia(c) => targets::tertulia::sit_idle(c).await,
            Conn::Redis(c) => targets::redis::sit_idle(c).await,
            Conn::Nats(c) => targets::nats::sit_idle(c).await,
            Conn::Irc(c) => targets::irc::sit_idle(c).await,
        }
    }
}

/// Wait until server `pid` has used almost no CPU for a second (under 2 %), or `limit`.
async fn server_goes_quiet(pid: &str, limit: Duration) -> Result<(), String> {
    const TICK: Duration = Duration::from_millis(250);
    let start = Instant::now();
    let mut quiet_ticks = 0;
    let mut last = procfs::cpu_seconds(pid).unwrap_or(0.0);
    while quiet_ticks < 4 {
        if start.elapsed() > limit {
            return Err(format!(
                "the server was still busy after {} s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(TICK).await;
        let now = procfs::cpu_seconds(pid).unwrap_or(0.0);
        quiet_ticks = if now - last <= 0.005 {
            quiet_ticks + 1
        } else {
            0
        };
        last = now;
    }
    Ok(())
}

/// Messages per client so a saturated run makes about `deliveries` deliveries.
fn messages_for(clients: usize, deliveries: u64) -> u64 {
    let per_message = (clients as u64 * (clients as u64 - 1)).max(1);
    (deliveries / per_message).clamp(20, 100_000)
}

fn matrix(preset: Preset, out: &std::path::Path, only: &[Target]) -> std::io::Result<()> {
    let targets: Vec<Target> = if only.is_empty() {
        vec![Target::Tertulia, Target::Redis, Target::Nats, Target::Irc]
    } else {
        only.to_vec()
    };
    let (sizes, reps, saturated, rate_secs, idle): (&[usize], usize, u64, f64, usize) = match preset
    {
        Preset::Full => (&[10, 100, 500], 3, 6_000_000, 10.0, 10_000),
        Preset::Quick => (&[100], 1, 1_500_000, 5.0, 1_000),
    };
    std::fs::create_dir_all(out)?;
    let runs_path = out.join("runs.jsonl");
    let mut runs_file = std::fs::File::create(&runs_path)?;
    let mut results = Vec::new();
    let mut record = |r: RunResult, results: &mut Vec<RunResult>| -> std::io::Result<()> {
        use std::io::Write;
        let line = serde_json::to_string(&r).unwrap_or_default();
        println!("{line}");
        writeln!(runs_file, "{line}")?;
        results.push(r);
        Ok(())
    };
    for rep in 0..reps {
        for &n in sizes {
            for mode in [Mode::Window(64), Mode::Rate(10.0)] {
                // Interleave the targets, rotating who goes first each repetition.
                for k in 0..targets.len() {
                    let target = targets[(k + rep) % targets.len()];
                    let messages = match mode {
                        Mode::Window(_) => messages_for(n, saturated),
                        _ => (10.0 * rate_secs) as u64,
                    };
                    eprintln!("rep {} · {target:?} · N={n} · {}", rep + 1, mode_name(mode));
                    let cfg = RunConfig {
                        target,
                        clients: n,
                        messages,
                        size: 128,
                        mode,
                    };
                    record(run_one(cfg, true), &mut results)?;
                }
            }
        }
    }
    for &target in &targets {
        eprintln!("idle · {target:?} · N={idle}");
        let cfg = RunConfig {
            target,
            clients: idle,
            messages: 0,
            size: 128,
            mode: Mode::Idle,
        };
        record(run_one(cfg, true), &mut results)?;
    }
    let table = chart::markdown(&results);
    std::fs::write(out.join("results.md"), &table)?;
    println!("\n{table}");
    if let Err(e) = chart::draw(&results, &out.join("chart.png")) {
        eprintln!("chart not drawn: {e}");
    }
    Ok(())
}

/// `handshakes`: see [`Command::Handshakes`].
fn handshakes(secs: f64) {
    use tertulia_core::handshake::{client_start, server_respond};
    use tertulia_core::identity::HostKey;
    let window = std::time::Duration::from_secs_f64(secs.clamp(0.1, 600.0));
    let w = [0x42u8; 32];
    let hello = tertulia_core::hello::hello_body(&[7u8; 16]);
    let host = HostKey::generate();
    let rate = |mut one: Box<dyn FnMut()>| {
        let started = std::time::Instant::now();
        let mut done = 0u64;
        while started.elapsed() < window {
            one();
            done += 1;
        }
        done as f64 / started.elapsed().as_secs_f64()
    };
    let full = rate(Box::new(|| {
        let (waiting, init) = client_start(&w, &hello).expect("init");
        let (_, response) = server_respond(&w, &host, &hello, &init).expect("response");
        waiting
            .read_response(&response)
            .expect("handshake completes");
    }));
    let (_, init) = client_start(&w, &hello).expect("init");
    let server_side = rate(Box::new(|| {
        server_respond(&w, &host, &hello, &init).expect("response");
    }));
    println!(
        "{}",
        serde_json::json!({
            "full_handshakes_per_s_one_core": full.round(),
            "server_side_handshakes_per_s_one_core": server_side.round(),
            "note": "one thread; full = client start + server response + client check in one process",
        })
    );
}

fn main() {
    let cli = Cli::parse();
    // A room of thousands of connections needs as many file descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match cli.command {
        Command::Run {
            target,
            clients,
            messages,
            size,
            window,
            rate,
            idle,
            pin,
        } => {
            let mode = if idle {
                Mode::Idle
            } else if let Some(rate) = rate {
                if !(rate.is_finite() && rate > 0.0) {
                    eprintln!("error: --rate must be a positive number");
                    std::process::exit(2);
                }
                Mode::Rate(rate)
            } else {
                Mode::Window(window.unwrap_or(64))
            };
            let cfg = RunConfig {
                target,
                clients: clients as usize,
                messages,
                size: size as usize,
                mode,
            };
            let result = run_one(cfg, pin);
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            if result.error.is_some() {
                std::process::exit(1);
            }
        }
        Command::Handshakes { secs } => handshakes(secs),
        Command::Files { mib, receivers } => match files::run(mib, receivers as usize) {
            Ok(result) => println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        },
        Command::Matrix {
            preset,
            out,
            targets,
        } => {
            if let Err(e) = matrix(preset, &out, &targets) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}
