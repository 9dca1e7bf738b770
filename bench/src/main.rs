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
    /// Messages each client sends (a timed run's cap).
    pub messages: u64,
    pub size: usize,
    pub mode: Mode,
    /// A timed run (window mode): send for `warmup` + `measure`, count only `measure`.
    pub timing: Option<Timing>,
}

/// A timed run: the clients send for `warmup`, then the figures are taken over `measure`,
/// then the clients stop and every message sent is waited for (so losses still count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
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
        /// Window mode: measure for this many seconds after `--warmup` instead of until the
        /// `-m` messages are delivered (`-m` is then ignored: the clients send until the
        /// measurement ends, then every message sent is waited for).
        #[arg(long, conflicts_with_all = ["rate", "idle"])]
        measure: Option<f64>,
        /// Seconds of sending before a timed run's measurement starts.
        #[arg(long, default_value_t = 1.0, requires = "measure")]
        warmup: f64,
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
    /// N ∈ {10, 100, 500}, saturated (window 64, 16, 4: 1 600 messages in flight) for 5 s
    /// after 1 s of warm-up, and 10 msg/s per client for 10 s; 3 repetitions, up to 2 more
    /// where a saturated range is over ±15 % (while the matrix is under 19 minutes); idle
    /// 10 000.
    Full,
    /// About two minutes: N = 100 saturated and 10 msg/s for 5 s, idle 1 000, one repetition.
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
    /// The most messages of one client out at once (sent, not yet back on its own
    /// connection); a window of W must keep it at W. 0 for ngIRCd (no own copy).
    pub max_in_flight: u64,
    pub corrupt: u64,
    /// The measured span: a timed run's measurement, else start to last delivery.
    pub duration_s: f64,
    /// Deliveries in the measured span (all of them for an untimed run).
    pub measured_deliveries: u64,
    pub deliveries_per_s: f64,
    /// Seconds of warm-up before the measured span (timed runs).
    pub warmup_s: f64,
    pub latency_us: Percentiles,
    pub lag_us: Option<Percentiles>,
    /// Server CPU seconds over the measured span.
    pub server_cpu_s: f64,
    /// Server CPU microseconds per measured delivery, and per message (a message is
    /// delivered to N − 1 members).
    pub server_cpu_us_per_delivery: f64,
    pub server_cpu_us_per_message: f64,
    pub server_rss_before: u64,
    /// Server RSS at the end of the measured span (the run still going).
    pub server_rss_during: u64,
    pub server_rss_after: u64,
    pub server_rss_peak: u64,
    /// Load generator CPU seconds over the measured span, and microseconds per delivery.
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_us_per_delivery: f64,
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
        max_in_flight: 0,
        corrupt: 0,
        duration_s: 0.0,
        measured_deliveries: 0,
        deliveries_per_s: 0.0,
        warmup_s: cfg.timing.map_or(0.0, |t| t.warmup.as_secs_f64()),
        latency_us: Percentiles::default(),
        lag_us: None,
        server_cpu_s: 0.0,
        server_cpu_us_per_delivery: 0.0,
        server_cpu_us_per_message: 0.0,
        server_rss_before: 0,
        server_rss_during: 0,
        server_rss_after: 0,
        server_rss_peak: 0,
        loadgen_cpu_s: 0.0,
        loadgen_cpu_us_per_delivery: 0.0,
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
    // Untimed: measure from the start until every delivery (or a stall). Timed: warm up,
    // measure, then stop the senders and wait for what they sent.
    let members = cfg.clients as u64;
    let mut phase = match cfg.timing {
        Some(t) => Phase::Warmup(start + t.warmup),
        None => Phase::Drain,
    };
    let mut span = Span {
        from: start,
        to: start,
        deliveries: 0,
        server_cpu: cpu0,
        loadgen_cpu: gen0,
    };
    let mut first_error = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match phase {
            Phase::Warmup(until) if Instant::now() >= until => {
                span = Span::now(&rec, pid);
                let measure = cfg.timing.map_or(Duration::ZERO, |t| t.measure);
                rec.borrow_mut()
                    .measure_between(span.from, span.from + measure);
                phase = Phase::Measure(span.from + measure);
            }
            Phase::Measure(until) if Instant::now() >= until => {
                let end = Span::now(&rec, pid);
                result.server_rss_during = procfs::rss_bytes(pid).unwrap_or(0);
                rec.borrow_mut().stop = true;
                span.close(&end);
                phase = Phase::Drain;
            }
            _ => {}
        }
        let finished = {
            let r = rec.borrow();
            let expected = match cfg.timing {
                Some(_) => r.sent * (members - 1),
                None => result.expected,
            };
            let stalled = r.last_delivery().elapsed() > STALL;
            (phase == Phase::Drain && r.deliveries >= expected) || stalled
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
    if cfg.timing.is_none() {
        // The whole run is the measured span, up to the last delivery.
        let mut end = Span::now(&rec, pid);
        end.to = rec.borrow().last_delivery();
        result.server_rss_during = procfs::rss_bytes(pid).unwrap_or(0);
        span.close(&end);
    } else if span.to == span.from {
        // Stalled or failed before the measurement ended.
        span.close(&Span::now(&rec, pid));
    }
    let r = rec.borrow();
    if cfg.timing.is_some() {
        result.expected = r.sent * (members - 1);
        result.messages = r.sent / members.max(1);
    }
    result.deliveries = r.deliveries;
    result.lost = result.expected.saturating_sub(r.deliveries);
    result.out_of_order = r.out_of_order;
    result.max_in_flight = r.max_in_flight;
    result.corrupt = r.corrupt;
    result.duration_s = span.to.saturating_duration_since(span.from).as_secs_f64();
    result.measured_deliveries = span.deliveries;
    result.deliveries_per_s = span.deliveries as f64 / result.duration_s.max(1e-9);
    result.latency_us = Percentiles::of(&r.latency);
    if matches!(cfg.mode, Mode::Rate(_)) {
        result.lag_us = Some(Percentiles::of(&r.lag));
    }
    result.server_cpu_s = span.server_cpu;
    result.loadgen_cpu_s = span.loadgen_cpu;
    let per_delivery = 1e6 / (span.deliveries.max(1) as f64);
    result.server_cpu_us_per_delivery = span.server_cpu * per_delivery;
    result.server_cpu_us_per_message =
        result.server_cpu_us_per_delivery * (members.saturating_sub(1).max(1) as f64);
    result.loadgen_cpu_us_per_delivery = span.loadgen_cpu * per_delivery;
    result.server_rss_after = procfs::rss_bytes(pid).unwrap_or(0);
    if let Some(e) = first_error {
        result.error = Some(e);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Sending, not measuring yet, until then.
    Warmup(Instant),
    /// Measuring until then.
    Measure(Instant),
    /// Waiting for every delivery of what was sent.
    Drain,
}

/// The measured span of a run: while open, its start's counters; once closed, the
/// differences.
struct Span {
    from: Instant,
    to: Instant,
    deliveries: u64,
    server_cpu: f64,
    loadgen_cpu: f64,
}

impl Span {
    fn now(rec: &record::Shared, pid: &str) -> Self {
        let at = Instant::now();
        Self {
            from: at,
            to: at,
            deliveries: rec.borrow().deliveries,
            server_cpu: procfs::cpu_seconds(pid).unwrap_or(0.0),
            loadgen_cpu: procfs::cpu_seconds("self").unwrap_or(0.0),
        }
    }

    /// Close the span at `end` (taken as [`Span::now`]).
    fn close(&mut self, end: &Span) {
        self.to = end.to;
        self.deliveries = end.deliveries - self.deliveries;
        self.server_cpu = end.server_cpu - self.server_cpu;
        self.loadgen_cpu = end.loadgen_cpu - self.loadgen_cpu;
    }
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

/// The cap on a timed run's messages per client (the run ends on time long before).
const TIMED_CAP: u64 = 10_000_000;

/// Messages in flight in a saturated room, all members together.
const ROOM_IN_FLIGHT: u64 = 1600;

/// The window of each member in a saturated run of `clients` members: [`ROOM_IN_FLIGHT`]
/// shared out, 4 to 64 each (N = 10: 64, N = 100: 16, N = 500: 4). A fixed window of 64 at
/// N = 500 keeps 32 000 messages in flight, 16 M deliveries: servers that queue a copy per
/// subscriber (Redis, NATS) held gigabytes and measured their allocator (Redis 0.04 M/s at
/// 3.2 GB), and every latency was seconds of queue. At N = 100, Redis did better at 16 than
/// at 64 in three pairs of four (its RSS 95–114 MiB instead of 300–430), Tertulia 10–15 %
/// worse in two pairs (bench/README.md).
fn saturating_window(clients: usize) -> u64 {
    (ROOM_IN_FLIGHT / clients.max(1) as u64).clamp(4, 64)
}

/// How far a figure's repetitions may stray from their median before more are run.
const SPREAD: f64 = 0.15;

/// The figures whose repetitions should agree: a saturated run's deliveries/s and server
/// CPU per delivery. (An open-loop run's rate is fixed, and its tail moves with whatever
/// else the machine runs: more repetitions there cost 10 s each and settle nothing.)
fn steady_figures(r: &RunResult) -> Vec<f64> {
    if r.mode.starts_with("window") {
        vec![r.deliveries_per_s, r.server_cpu_us_per_delivery]
    } else {
        Vec::new()
    }
}

/// Whether the runs of one configuration stray more than [`SPREAD`] from their median in
/// any steady figure (see [`steady_figures`]).
fn too_wide(runs: &[&RunResult]) -> bool {
    let Some(first) = runs.first() else {
        return false;
    };
    (0..steady_figures(first).len()).any(|i| {
        let (median, lo, hi) =
            chart::median_range(runs.iter().map(|r| steady_figures(r)[i]).collect());
        median > 0.0 && (hi - median).max(median - lo) > SPREAD * median
    })
}

fn matrix(preset: Preset, out: &std::path::Path, only: &[Target]) -> std::io::Result<()> {
    let targets: Vec<Target> = if only.is_empty() {
        vec![Target::Tertulia, Target::Redis, Target::Nats, Target::Irc]
    } else {
        only.to_vec()
    };
    // Sizes, repetitions, extra repetitions at most (for saturated configurations whose range
    // is wider than ±15 %), seconds of open-loop sending, idle connections.
    let (sizes, reps, extra, rate_secs, idle): (&[usize], usize, usize, f64, usize) = match preset {
        Preset::Full => (&[10, 100, 500], 3, 2, 10.0, 10_000),
        Preset::Quick => (&[100], 1, 0, 5.0, 1_000),
    };
    // Extra repetitions start only while the matrix is within this of its start (the three
    // repetitions take about 15 minutes here; idle, files and handshakes follow).
    let extra_budget = Duration::from_secs(19 * 60);
    let started = Instant::now();
    let timing = Timing {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(5),
    };
    std::fs::create_dir_all(out)?;
    let runs_path = out.join("runs.jsonl");
    let mut runs_file = std::fs::File::create(&runs_path)?;
    let mut results: Vec<RunResult> = Vec::new();
    let mut record = |r: RunResult, results: &mut Vec<RunResult>| -> std::io::Result<()> {
        use std::io::Write;
        let line = serde_json::to_string(&r).unwrap_or_default();
        println!("{line}");
        writeln!(runs_file, "{line}")?;
        results.push(r);
        Ok(())
    };
    for rep in 0..reps + extra {
        for &n in sizes {
            for mode in [Mode::Window(saturating_window(n)), Mode::Rate(10.0)] {
                // Interleave the targets, rotating who goes first each repetition.
                for k in 0..targets.len() {
                    let target = targets[(k + rep) % targets.len()];
                    if rep >= reps {
                        // An extra repetition, only where the runs so far disagree.
                        let name = mode_name(mode);
                        let runs: Vec<&RunResult> = results
                            .iter()
                            .filter(|r| r.target == target && r.clients == n && r.mode == name)
                            .collect();
                        if !too_wide(&runs) || started.elapsed() > extra_budget {
                            continue;
                        }
                    }
                    let (messages, timing) = match mode {
                        Mode::Window(_) => (TIMED_CAP, Some(timing)),
                        _ => ((10.0 * rate_secs) as u64, None),
                    };
                    eprintln!("rep {} · {target:?} · N={n} · {}", rep + 1, mode_name(mode));
                    let cfg = RunConfig {
                        target,
                        clients: n,
                        messages,
                        size: 128,
                        mode,
                        timing,
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
            timing: None,
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
            measure,
            warmup,
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
            let timing = match measure {
                Some(measure) if matches!(mode, Mode::Window(_)) => {
                    let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 3600.0));
                    Some(Timing {
                        warmup: secs(warmup),
                        measure: secs(measure),
                    })
                }
                _ => None,
            };
            let cfg = RunConfig {
                target,
                clients: clients as usize,
                messages: if timing.is_some() {
                    TIMED_CAP
                } else {
                    messages
                },
                size: size as usize,
                mode,
                timing,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A real redis-server under a saturated window: at most W of a client's messages may be
    /// out at once (sent and not yet back on its own subscriber connection). Counting
    /// PUBLISH's replies as acknowledgements (as the generator once did) let every publisher
    /// run ahead of the subscribers — Redis replies once the message is queued — and Redis
    /// held the run in its output buffers (1.2 GB at N = 100 in `make bench`).
    #[test]
    fn redis_window_bounds_messages_in_flight() {
        if std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIP: redis-server is not installed (make deps-bench installs it)");
            return;
        }
        let cfg = RunConfig {
            target: Target::Redis,
            clients: 50,
            messages: 200,
            size: 128,
            mode: Mode::Window(4),
            timing: None,
        };
        let r = run_one(cfg, false);
        assert_eq!(r.error, None);
        assert_eq!(r.lost, 0);
        assert_eq!(r.corrupt, 0);
        assert_eq!(r.deliveries, 50 * 49 * 200);
        assert!(r.max_in_flight >= 1, "own copies were seen");
        assert!(
            r.max_in_flight <= 4,
            "{} messages of one client out at once with a window of 4",
            r.max_in_flight
        );
    }

    #[test]
    fn saturating_window_shares_out_the_room() {
        assert_eq!(saturating_window(10), 64);
        assert_eq!(saturating_window(100), 16);
        assert_eq!(saturating_window(500), 4);
        assert_eq!(saturating_window(100_000), 4);
    }
}
