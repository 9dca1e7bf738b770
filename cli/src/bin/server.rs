//! `tertulia-server`: a headless Tertulia room.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tertulia_cli::{obtain_passphrase, shareable_addresses, PassphraseSource, DEFAULT_PORT};
use tertulia_core::passphrase;
use tertulia_core::room::RoomConfig;
use tertulia_core::server::{Server, ServerConfig};
use tracing_subscriber::EnvFilter;

/// Host an encrypted Tertulia chat room.
///
/// The room passphrase is read from --passphrase-file, else the TERTULIA_PASSPHRASE
/// environment variable, else a hidden prompt. With none of them and no terminal, a strong
/// passphrase is generated and printed.
#[derive(Parser, Debug)]
#[command(version, about)]
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
    /// KiB of broadcast data that may wait for one member before it is cut off as too slow.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    send_queue_kib: u64,
    /// Keep the room's history and state in this directory (SQLite), so a restarted server
    /// continues the same room. Without it the room lives in memory only.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Seconds a new connection has to complete the handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    handshake_timeout_secs: u64,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    std::process::exit(run(args).await);
}

async fn run(args: Args) -> i32 {
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
    let config = ServerConfig {
        room: RoomConfig {
            history: args.history as usize,
            backlog: args.backlog as usize,
            grace: Duration::from_secs(args.grace_secs),
            send_queue_bytes: args.send_queue_kib as usize * 1024,
        },
        max_connections: args.max_connections as usize,
        handshake_timeout: Duration::from_secs(args.handshake_timeout_secs),
        data_dir: args.data_dir.clone(),
        ..ServerConfig::default()
    };
    let server = match Server::bind(&args.listen, &passphrase, config).await {
        Ok(server) => server,
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
    if generated {
        println!("room passphrase (generated): {passphrase}");
    }
    let share = if local.ip().is_unspecified() {
        shareable_addresses(local.port())
    } else {
        vec![local.to_string()]
    };
    for addr in &share {
        println!("others can join with: tertulia-chat {addr} --nick NAME");
    }
    if share.is_empty() {
        println!(
            "others can join with: tertulia-chat HOST:{} --nick NAME",
            local.port()
        );
    }
    server.run(shutdown_signal()).await;
    println!("server stopped");
    0
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
