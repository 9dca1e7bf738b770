//! `tertulia-server`: a headless Tertulia room.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tertulia_cli::{obtain_passphrase, PassphraseSource, DEFAULT_PORT, PASSPHRASE_ENV};
use tertulia_core::frame::MAX_BODY;
use tertulia_core::identity::HostKey;
use tertulia_core::invite::Invite;
use tertulia_core::passphrase;
use tertulia_core::portmap::{self, Check, Failure, Mapper, MapperConfig, Status, Update, Via};
use tertulia_core::server::shareable_for;
use tertulia_core::server::{
    ConfigError, FileLimits, FloodLimit, HandshakeThrottle, PreviousRoom, Retention, RoomConfig,
    Server, ServerConfig, ServerError, DEFAULT_MAX_FILES_BYTES, DEFAULT_MAX_FILE_BYTES,
    DEFAULT_REKEY_INTERVAL, DEFAULT_UNFINISHED_TTL, DEFAULT_UNSTARTED_TTL, FRAME_NEEDED_FOR_FILES,
    MAX_FLOOD_RATE, MIN_FRAME_BYTES,
};
use tertulia_core::text::MAX_MESSAGE_BYTES;
use tracing_subscriber::EnvFilter;

/// Host an encrypted Tertulia chat room.
///
/// The room passphrase is read from --passphrase-file, else the TERTULIA_PASSPHRASE
/// environment variable, else a hidden prompt. With none of them and no terminal, a strong
/// passphrase is generated and printed.
///
/// A stored room is bound to its passphrase: started with a different one on the same data
/// directory, the server refuses (exit code 3) unless --new-room says what to do with the
/// previous room.
#[derive(Parser, Debug)]
#[command(version, about, after_help = EXIT_CODES)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value_t = format!("0.0.0.0:{DEFAULT_PORT}"))]
    listen: String,
    /// File whose content (trimmed) is the room passphrase.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
    /// Generate a strong passphrase and print it, instead of asking for one.
    #[arg(long)]
    generate_passphrase: bool,
    /// Print a new strong passphrase (as the app generates them) on a line of its own and
    /// exit, e.g. to create a passphrase file: `tertulia-server --print-passphrase > FILE`.
    #[arg(long, exclusive = true)]
    print_passphrase: bool,
    /// Print the host identity and the invite codes for --listen (the passphrase from
    /// --passphrase-file or TERTULIA_PASSPHRASE; the identity from --host-key or
    /// DATA_DIR/host.key, created if missing as at start) and exit without serving: for a
    /// server that runs, or will run, with the same settings.
    #[arg(long, conflicts_with_all = ["generate_passphrase", "in_memory"])]
    print_invite: bool,
    /// Maximum simultaneous connections.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Room events kept in memory for members who reconnect.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    history: u32,
    /// Events a newly joined member receives as backlog.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    backlog: u32,
    /// Seconds a dropped member keeps its nickname without a leave notice.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    grace_secs: u64,
    /// KiB of broadcast data that may wait for one member; a member over it whose connection
    /// takes nothing for --slow-consumer-secs is cut off as too slow.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    send_queue_kib: u64,
    /// KiB of broadcast data past which a member is cut off at once, reading or not
    /// [default: 4 × --send-queue-kib].
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u64).range(16..=4_194_304))]
    send_queue_max_kib: Option<u64>,
    /// Seconds a member over --send-queue-kib may take nothing before it is cut off.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    slow_consumer_secs: u64,
    /// Keep the room's history and state in this directory (SQLite), so a restarted server
    /// continues the same room [default: the platform data directory, e.g.
    /// ~/.local/share/tertulia/server].
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    data_dir: Option<PathBuf>,
    /// Keep the room in memory only: its history is gone when the server stops.
    #[arg(long)]
    in_memory: bool,
    /// The file holding the host's identity key (created, mode 0600, if missing)
    /// [default: DATA_DIR/host.key; with --in-memory: a new identity at every start, which
    /// members who pinned the old one are warned about].
    #[arg(long, value_name = "FILE")]
    host_key: Option<PathBuf>,
    /// The data directory holds a room with a different passphrase: start a new room and
    /// keep the previous one's files (set aside in DIR/previous-rooms/<UTC time>/), or delete
    /// them. Without it the server refuses to start (exit code 3).
    #[arg(long, value_name = "WHAT", value_enum)]
    new_room: Option<NewRoom>,
    /// Keep at most this many newest room events (messages, joins, leaves), or `unlimited`.
    #[arg(long, value_name = "N", default_value_t = Cap::default_events(), value_parser = Cap::parse_events)]
    retain_events: Cap,
    /// Forget room events older than this many days, or `unlimited`.
    #[arg(long, value_name = "DAYS", default_value_t = Cap(None), value_parser = Cap::parse_days)]
    retain_days: Cap,
    /// Largest size of the room database in MiB, or `unlimited` (only the disk); at it the
    /// oldest history is deleted (down to about 90 %) so the room keeps working.
    #[arg(long, value_name = "MIB", default_value_t = Cap::default_store_mib(), value_parser = Cap::parse_mib)]
    max_store_mib: Cap,
    /// Seconds a new connection has to complete the handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    handshake_timeout_secs: u64,
    /// Failed handshakes (wrong passphrase) from one IPv4 address or IPv6 /64 before it is
    /// refused for --lockout-secs; replies to failures after the first 3 are delayed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_failed_handshakes: u32,
    /// Seconds an address with too many failed handshakes is refused.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=65_535))]
    lockout_secs: u64,
    /// Maximum simultaneous connections from one IP address.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections_per_ip: u32,
    /// Chat messages per second one member may send (after the burst); 0 turns flood control off.
    #[arg(long, default_value_t = 5.0, value_parser = parse_rate)]
    flood_rate: f64,
    /// Chat messages one member may send at once before the rate applies.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    flood_burst: u32,
    /// New members one address may add per minute after a burst of
    /// --max-connections-per-ip (rejoining within the grace period does not count); 0 turns
    /// it off. Beyond it a join is refused ("retry in N s").
    #[arg(long, value_name = "N", default_value_t = 6.0, value_parser = parse_joins)]
    joins_per_minute: f64,
    /// Messages held back by flood control for one member before it is disconnected.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    flood_queue: u32,
    /// Longest chat message in bytes (UTF-8).
    #[arg(long, default_value_t = MAX_MESSAGE_BYTES as u32, value_parser = clap::value_parser!(u32).range(1..=MAX_MESSAGE_BYTES as i64))]
    max_message_bytes: u32,
    /// Largest frame a client may send, in bytes (must fit the longest message).
    #[arg(long, default_value_t = MAX_BODY as u32, value_parser = clap::value_parser!(u32).range(MIN_FRAME_BYTES as i64..=MAX_BODY as i64))]
    max_frame_bytes: u32,
    /// Seconds a room broadcast key is used (from its first broadcast) before a fresh one
    /// replaces it; at least 1. The key also changes whenever a member leaves.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_REKEY_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(0..=7 * 24 * 3600))]
    rekey_secs: u64,
    /// Largest file a member may share, in MiB; 0: the room takes no files.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_FILE_BYTES / MIB, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    max_file_mib: u64,
    /// Space for all shared files together, in MiB (unfinished uploads by what has arrived,
    /// at most half of it); at it the oldest files give way as chunks arrive (their messages
    /// stay). Files also leave with their message
    /// (--retain-events, --retain-days, --max-store-mib).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_FILES_BYTES / MIB, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    max_files_mib: u64,
    /// Seconds an unfinished upload is kept after its last stored chunk before it is deleted.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_UNFINISHED_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    unfinished_upload_secs: u64,
    /// Seconds an offered upload that has received no chunk is kept before it is deleted (an
    /// offer holds a place, never space).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_UNSTARTED_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=24 * 3600))]
    unstarted_upload_secs: u64,
    /// Announce the room on the LAN (mDNS/DNS-SD `_tertulia._tcp`: its name, port, protocol
    /// version and host identity, never the passphrase) so others find it with
    /// `tertulia-chat --discover` or the app's Join screen; withdrawn when the server stops.
    #[arg(long)]
    announce: bool,
    /// The room name --announce shows [default: "HOSTNAME's room", or "Sala de HOSTNAME" in
    /// a Spanish locale]; at most 63 bytes are announced.
    #[arg(long, value_name = "NAME", requires = "announce")]
    room_name: Option<String>,
    /// Ask the router (UPnP-IGD, PCP, NAT-PMP) to forward the port, so friends outside this
    /// network can join; the mapping is renewed while the server runs and deleted when it
    /// stops. Without an answer the room still serves this network.
    #[arg(long)]
    internet: bool,
    /// With --internet: the protocols to ask the router in.
    #[arg(long, value_name = "HOW", value_enum, default_value_t = InternetVia::Auto, requires = "internet")]
    internet_via: InternetVia,
    /// With --internet: the lease asked for, in seconds (renewed at half of what the router
    /// grants).
    #[arg(long, value_name = "SECS", default_value_t = portmap::DEFAULT_LIFETIME.as_secs(), value_parser = clap::value_parser!(u64).range(2..=portmap::MAX_LIFETIME.as_secs()), requires = "internet")]
    internet_lease_secs: u64,
}

/// Which protocols --internet asks the router in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InternetVia {
    /// UPnP-IGD, then PCP / NAT-PMP.
    Auto,
    Upnp,
    /// PCP, then NAT-PMP.
    Pcp,
    NatPmp,
}

const MIB: u64 = 1024 * 1024;

const EXIT_CODES: &str = "Exit codes: 0 stopped, 1 could not start, 2 contradictory settings, \
3 the data directory holds a room with a different passphrase (see --new-room).";

/// Exit code when the stored room has a different passphrase.
const EXIT_ROOM_PASSPHRASE_CHANGED: i32 = 3;

/// What --new-room does with the previous room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NewRoom {
    /// Set the previous room's files aside in the data directory.
    Keep,
    /// Delete the previous room's files.
    Delete,
}

/// A limit that may be `unlimited` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cap(Option<u64>);

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("unlimited"),
        }
    }
}

impl Cap {
    fn parse(text: &str, range: std::ops::RangeInclusive<u64>) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(Cap(None));
        }
        match text.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Cap(Some(n))),
            _ => Err(format!(
                "expected a number from {} to {}, or `unlimited`",
                range.start(),
                range.end()
            )),
        }
    }
    fn parse_events(text: &str) -> Result<Self, String> {
        Self::parse(text, 1..=u64::MAX >> 1)
    }
    fn parse_days(text: &str) -> Result<Self, String> {
        Self::parse(text, 1..=36_500)
    }
    fn parse_mib(text: &str) -> Result<Self, String> {
        Self::parse(text, 1..=1_048_576)
    }
    /// The library's defaults, so the app's hosted room and this server agree.
    fn default_events() -> Self {
        Cap(RoomConfig::default().retention.max_events)
    }
    fn default_store_mib() -> Self {
        Cap(ServerConfig::default()
            .max_store_bytes
            .map(|b| b / (1024 * 1024)))
    }
}

fn parse_joins(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=MAX_FLOOD_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "expected a number of new members per minute from 0 to {MAX_FLOOD_RATE}"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=MAX_FLOOD_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "expected a number of messages per second from 0 to {MAX_FLOOD_RATE}"
        )),
    }
}

/// A contradiction in the settings, told in terms of the flags that set them.
fn in_flags(error: &ConfigError, args: &Args, send_queue_max_kib: u64) -> String {
    match error {
        ConfigError::FrameTooSmallForMessage { needed, .. } => format!(
            "--max-frame-bytes {} is too small for --max-message-bytes {} (needs at least {needed})",
            args.max_frame_bytes, args.max_message_bytes
        ),
        ConfigError::SendQueueCapBelowBudget { .. } => format!(
            "--send-queue-max-kib {send_queue_max_kib} is below --send-queue-kib {}",
            args.send_queue_kib
        ),
        ConfigError::FloodRate(_) => format!("--flood-rate: {error}"),
        ConfigError::RekeyInterval(_) => format!("--rekey-secs {}: {error}", args.rekey_secs),
        ConfigError::FileOverQuota { .. } => format!(
            "--max-file-mib {} is above --max-files-mib {}",
            args.max_file_mib, args.max_files_mib
        ),
        other => other.to_string(),
    }
}

/// Where the room lives when neither --data-dir nor --in-memory is given.
fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("tertulia").join("server"))
}

/// Whether stderr is connected to the systemd journal (`JOURNAL_STREAM` names its device and
/// inode), which stamps every line itself.
fn logging_to_journal() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
            return false;
        };
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        std::fs::File::from(fd)
            .metadata()
            .is_ok_and(|m| dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()))
    }
    #[cfg(not(unix))]
    false
}

#[tokio::main]
async fn main() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if logging_to_journal() {
        // journald stamps each line: a second timestamp only makes `journalctl` lines longer.
        logs.without_time().init();
    } else {
        logs.init();
    }
    let args = Args::parse();
    if args.print_passphrase {
        println!("{}", passphrase::generate());
        return;
    }
    std::process::exit(run(args).await);
}

async fn run(args: Args) -> i32 {
    let send_queue_max_kib = args.send_queue_max_kib.unwrap_or(4 * args.send_queue_kib);
    let data_dir = if args.in_memory {
        None
    } else {
        match args.data_dir.clone().or_else(default_data_dir) {
            Some(dir) => Some(dir),
            None => {
                eprintln!("error: no data directory found for this user; pass --data-dir DIR or --in-memory");
                return 2;
            }
        }
    };
    let key_file = args
        .host_key
        .clone()
        .or_else(|| data_dir.as_ref().map(|d| d.join("host.key")));
    let host_key = match &key_file {
        Some(path) => match HostKey::load_or_create(path) {
            Ok(key) => key,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        None => {
            tracing::warn!("no --host-key with --in-memory: a new host identity for this run; members who pinned the previous one will be told it changed");
            HostKey::generate()
        }
    };
    let config = ServerConfig {
        host_key: Some(host_key),
        room: RoomConfig {
            history: args.history as usize,
            backlog: args.backlog as usize,
            grace: Duration::from_secs(args.grace_secs),
            send_queue_bytes: args.send_queue_kib as usize * 1024,
            send_queue_max_bytes: send_queue_max_kib as usize * 1024,
            stall_timeout: Duration::from_secs(args.slow_consumer_secs),
            retention: Retention {
                max_events: args.retain_events.0,
                max_age_ms: args.retain_days.0.map(|d| d * 24 * 3600 * 1000),
            },
            ..RoomConfig::default()
        },
        // One queue item per 64 bytes of budget: the byte budget is the limit that matters.
        send_queue_items: (send_queue_max_kib as usize * 1024 / 64).max(1024),
        max_connections: args.max_connections as usize,
        max_connections_per_ip: args.max_connections_per_ip as usize,
        max_frame_bytes: args.max_frame_bytes as usize,
        max_message_bytes: args.max_message_bytes as usize,
        flood: FloodLimit {
            per_second: args.flood_rate,
            burst: args.flood_burst as f64,
        },
        flood_queue: args.flood_queue as usize,
        handshake_timeout: Duration::from_secs(args.handshake_timeout_secs),
        // The client joins right after the handshake: waiting longer only holds connections.
        join_timeout: Duration::from_secs(args.handshake_timeout_secs),
        handshake_throttle: HandshakeThrottle {
            max_failures: args.max_failed_handshakes,
            lockout: Duration::from_secs(args.lockout_secs),
            ..HandshakeThrottle::default()
        },
        data_dir: data_dir.clone(),
        max_store_bytes: args.max_store_mib.0.map(|m| m * 1024 * 1024),
        joins_per_minute: args.joins_per_minute,
        rekey_interval: Duration::from_secs(args.rekey_secs),
        previous_room: match args.new_room {
            None => PreviousRoom::Refuse,
            Some(NewRoom::Keep) => PreviousRoom::Keep,
            Some(NewRoom::Delete) => PreviousRoom::Delete,
        },
        files: FileLimits {
            max_file_bytes: args.max_file_mib * MIB,
            max_total_bytes: args.max_files_mib * MIB,
            unfinished_ttl: Duration::from_secs(args.unfinished_upload_secs),
            unstarted_ttl: Duration::from_secs(args.unstarted_upload_secs),
            ..FileLimits::default()
        },
        ..ServerConfig::default()
    };
    if let Err(e) = config.validate() {
        eprintln!("error: {}", in_flags(&e, &args, send_queue_max_kib));
        return 2;
    }
    if args.print_invite {
        return print_invite(&args, &config);
    }
    let takes_files = config.takes_files();
    // Each connection is a file descriptor: use all the operating system allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let (passphrase, generated) = if args.generate_passphrase {
        (passphrase::generate(), true)
    } else {
        match obtain_passphrase(
            args.passphrase_file.as_deref(),
            "Room passphrase (others will need it): ",
        ) {
            Ok(Some((pass, source))) => {
                if source == PassphraseSource::Prompt && pass.chars().count() < 12 {
                    eprintln!("warning: short passphrases can be guessed offline from a recorded handshake");
                }
                (pass, false)
            }
            Ok(None) => (passphrase::generate(), true),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    };
    let server = match Server::bind(&args.listen, &passphrase, config).await {
        Ok(server) => server,
        Err(ServerError::RoomPassphraseChanged { data_dir }) => {
            eprintln!(
                "error: the room stored in {} was created with a different passphrase. \
                 Use that passphrase to continue it, or start a new room with \
                 --new-room keep (the previous room's files are set aside in {}) or \
                 --new-room delete (they are deleted).",
                data_dir.display(),
                data_dir.join("previous-rooms").display()
            );
            return EXIT_ROOM_PASSPHRASE_CHANGED;
        }
        Err(e) => {
            eprintln!("error: cannot start the server on {}: {e}", args.listen);
            return 1;
        }
    };
    let local = match server.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!("listening on {local}");
    match &data_dir {
        Some(dir) => println!("room stored in {}", dir.display()),
        None => println!("room kept in memory only (--in-memory)"),
    }
    if args.max_file_mib == 0 {
        println!("files: not taken (--max-file-mib 0)");
    } else if !takes_files {
        println!(
            "files: not taken (--max-frame-bytes is below {FRAME_NEEDED_FOR_FILES}, too small for a file chunk)"
        );
    } else {
        println!(
            "files: up to {} MiB each, {} MiB in all",
            args.max_file_mib, args.max_files_mib
        );
    }
    let fingerprint = server.host_fingerprint();
    println!("host identity: {fingerprint}");
    if generated {
        println!("room passphrase (generated): {passphrase}");
    }
    let share: Vec<String> = server
        .shareable_addresses()
        .unwrap_or_default()
        .iter()
        .map(|a| a.to_string())
        .collect();
    for addr in &share {
        println!("others can join with: tertulia-chat {addr} --nick NAME");
    }
    if generated {
        for addr in server.shareable_addresses().unwrap_or_default() {
            let invite = Invite::new(addr.ip().to_string(), addr.port(), passphrase.clone())
                .with_fingerprint(fingerprint);
            println!("invite code: {invite}");
        }
    }
    if share.is_empty() {
        println!(
            "others can join with: tertulia-chat HOST:{} --nick NAME",
            local.port()
        );
    }
    if args.internet && local.ip().is_loopback() {
        eprintln!("error: --internet needs a listener others can reach, not {local}");
        return 2;
    }
    let internet = args.internet.then(|| {
        let (mapper, updates) = Mapper::start(MapperConfig {
            port: local.port(),
            listen_ip: local.ip(),
            via: match args.internet_via {
                InternetVia::Auto => Via::Auto,
                InternetVia::Upnp => Via::Upnp,
                InternetVia::Pcp => Via::Pcp,
                InternetVia::NatPmp => Via::NatPmp,
            },
            lease: portmap::LeaseConfig {
                lifetime: Duration::from_secs(args.internet_lease_secs),
                ..portmap::LeaseConfig::default()
            },
            record: data_dir.as_deref().map(portmap::record::path_in),
        });
        let invite = generated.then(|| (passphrase.clone(), fingerprint));
        let printer = tokio::spawn(print_internet(updates, local.port(), invite));
        (mapper, printer)
    });
    if !args.internet {
        // A mapping a previous run with --internet left behind (killed before deleting it):
        // deleted in the background, bounded, while the room serves.
        if let Some(path) = data_dir.as_deref().map(portmap::record::path_in) {
            tokio::spawn(async move { portmap::record::clear_stale(&path).await });
        }
    }
    let announcer = args
        .announce
        .then(|| tertulia_cli::discover::announce(local, fingerprint, args.room_name.as_deref()))
        .flatten();
    // On Ctrl-C or SIGTERM the announcement goes first (goodbye packets), then the room.
    server
        .run(async move {
            shutdown_signal().await;
            tertulia_cli::discover::withdraw(announcer).await;
        })
        .await;
    if let Some((mapper, printer)) = internet {
        mapper.stop().await;
        let _ = printer.await;
    }
    println!("server stopped");
    0
}

/// `--print-invite`: the host identity and an invite code per address a server listening on
/// `--listen` is reachable at; nothing is bound, so the server may be running meanwhile.
fn print_invite(args: &Args, config: &ServerConfig) -> i32 {
    let listen = match args.listen.parse::<std::net::SocketAddr>() {
        Ok(listen) => listen,
        Err(_) => {
            eprintln!(
                "error: --print-invite needs --listen as IP:PORT, not {}",
                args.listen
            );
            return 2;
        }
    };
    let passphrase = match obtain_passphrase(args.passphrase_file.as_deref(), "") {
        Ok(Some((pass, _))) => pass,
        Ok(None) => {
            eprintln!("error: --print-invite needs the room passphrase: --passphrase-file PATH or {PASSPHRASE_ENV}");
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let Some(fingerprint) = config.host_key.as_ref().map(|k| k.public().fingerprint()) else {
        eprintln!("error: no host identity: pass --data-dir DIR or --host-key FILE");
        return 2;
    };
    println!("host identity: {fingerprint}");
    let share = shareable_for(listen);
    if share.is_empty() {
        println!(
            "invite code: none, no network address found; others join with: tertulia-chat HOST:{} --nick NAME (and the passphrase)",
            listen.port()
        );
    }
    for addr in share {
        let invite = Invite::new(addr.ip().to_string(), addr.port(), passphrase.clone())
            .with_fingerprint(fingerprint);
        println!("invite code: {invite}");
    }
    0
}

/// One line per change of the room's reach from the internet, each starting `internet:`.
async fn print_internet(
    mut updates: tokio::sync::mpsc::Receiver<Update>,
    port: u16,
    invite: Option<(String, tertulia_core::identity::Fingerprint)>,
) {
    let lease = |l: Option<Duration>| match l {
        Some(d) => format!("lease {} s", d.as_secs()),
        None => "permanent".to_owned(),
    };
    while let Some(Update { status, internal }) = updates.recv().await {
        match status {
            Status::Asking => {
                println!("internet: asking the router to forward TCP port {port}")
            }
            Status::Reachable {
                external,
                method,
                lifetime,
            } => {
                println!(
                    "internet: reachable from the internet at {external} ({method}, {})",
                    lease(lifetime)
                );
                println!(
                    "others outside your network can join with: tertulia-chat {external} --nick NAME"
                );
                if let Some((pass, fingerprint)) = &invite {
                    let code =
                        Invite::new(external.ip().to_string(), external.port(), pass.clone())
                            .with_fingerprint(*fingerprint);
                    println!("invite code (internet): {code}");
                }
            }
            Status::Renewed { external, lifetime } => {
                println!(
                    "internet: lease renewed at {external} ({})",
                    lease(lifetime)
                )
            }
            Status::Checked {
                external,
                check: Check::Confirmed,
            } => println!("internet: self-check: the room answers at {external}"),
            Status::Checked {
                external,
                check: Check::CouldNotConfirm,
            } => println!(
                "internet: self-check: could not confirm {external} from inside this network \
                 (many routers do not loop connections back); friends outside may still reach it"
            ),
            Status::Unreachable(failure) => {
                let advice = match failure {
                    Failure::NotPublic { .. } => {
                        "ask your provider for a public address, or use a VPN such as Tailscale"
                            .to_owned()
                    }
                    _ => portmap::advice(port, internal),
                };
                println!("internet: not reachable from the internet: {failure}; {advice}");
                println!("internet: the room still serves your local network");
            }
            Status::Lost { external, failure } => {
                println!("internet: the router dropped the mapping at {external} ({failure}); asking again")
            }
            Status::Removed => println!("internet: port mapping removed"),
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
}
