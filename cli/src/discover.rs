//! `tertulia-chat --discover`: list the rooms announced on this network (mDNS/DNS-SD,
//! `docs/PROTOCOL.md` §14) as they appear and disappear, for a while or until Ctrl-C; with
//! `--json`, one event per line. And the server's half: announcing its room
//! ([`announce`]).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use tertulia_core::discovery::{Advert, Announcer, Browser, DiscoveryEvent};
use tertulia_core::hello::PROTOCOL_VERSION;
use tertulia_core::identity::Fingerprint;
use tracing_subscriber::EnvFilter;

use crate::lang::Lang;
use crate::render::Style;

/// List the Tertulia rooms announced on this network (mDNS), live.
///
/// Each room is printed when it appears (with its address and the command to join it) and
/// when it disappears. --json prints one JSON object per line instead: room_found,
/// room_updated, room_lost, and discover_done at the end.
///
/// Exit codes: 0 done, 1 no network to look on (only loopback) or mDNS failed, 2 bad arguments.
#[derive(Parser, Debug)]
#[command(name = "tertulia-chat --discover", version)]
pub struct DiscoverArgs {
    /// List rooms on this network instead of joining one.
    #[arg(long, required = true)]
    discover: bool,
    /// One JSON event per line.
    #[arg(long)]
    json: bool,
    /// Seconds to keep listening; 0: until Ctrl-C.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    discover_secs: u64,
    /// Language of the messages (default: the system's, from LC_ALL, LC_MESSAGES or LANG).
    #[arg(long, value_enum, value_name = "LANG")]
    lang: Option<Lang>,
    /// Never use colours (also honoured: the NO_COLOR environment variable).
    #[arg(long)]
    no_color: bool,
}

/// Whether `tertulia-chat` was asked to discover rather than join.
pub fn requested() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--discover")
}

/// `tertulia-chat --discover ...`: returns the process exit code.
pub async fn main() -> i32 {
    let args = DiscoverArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    run(args).await
}

/// A room event as `--json` prints it: the core's event, plus `address` (the first address
/// with the port, ready for `tertulia-chat ADDRESS`).
fn json_event(event: &DiscoveryEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let DiscoveryEvent::Found(room) | DiscoveryEvent::Updated(room) = event {
        if let (Some(ip), Value::Object(map)) = (room.addresses.first(), &mut value) {
            map.insert(
                "address".into(),
                Value::String(SocketAddr::new(*ip, room.port).to_string()),
            );
        }
    }
    value
}

async fn run(args: DiscoverArgs) -> i32 {
    let lang = args.lang.unwrap_or_else(Lang::from_env);
    let color =
        !args.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let style = Style { color };
    let (browser, mut events) = match Browser::start() {
        Ok(started) => started,
        Err(e) => {
            eprintln!("{}", lang.error_line(&lang.discovery_error(&e)));
            return crate::exit::ERROR;
        }
    };
    let mut out = std::io::stdout().lock();
    if !args.json {
        let _ = writeln!(
            out,
            "{}",
            style.notice(&lang.discover_start(args.discover_secs))
        );
        let _ = out.flush();
    }
    let deadline = (args.discover_secs > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(args.discover_secs));
    let until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let mut listed: HashMap<String, String> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = &mut until_deadline => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(event) = event else { break };
        let line = if args.json {
            json_event(&event).to_string()
        } else {
            match &event {
                DiscoveryEvent::Found(room) | DiscoveryEvent::Updated(room) => {
                    let updated = matches!(event, DiscoveryEvent::Updated(_));
                    lang.discover_room(room, updated, PROTOCOL_VERSION)
                }
                DiscoveryEvent::Lost { instance } => {
                    lang.discover_lost(listed.get(instance).unwrap_or(instance))
                }
            }
        };
        match &event {
            DiscoveryEvent::Found(room) | DiscoveryEvent::Updated(room) => {
                listed.insert(room.instance.clone(), room.room_name.clone());
            }
            DiscoveryEvent::Lost { instance } => {
                listed.remove(instance);
            }
        }
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    if args.json {
        let done = serde_json::json!({"type": "discover_done", "rooms": listed.len()});
        let _ = writeln!(out, "{done}");
    } else {
        let _ = writeln!(
            out,
            "{}",
            style.notice(&lang.discover_summary(listed.len()))
        );
    }
    let _ = out.flush();
    drop(out);
    tokio::task::spawn_blocking(move || browser.stop())
        .await
        .ok();
    crate::exit::OK
}

/// `tertulia-server --announce`: announce the room listening on `local` under `room_name`
/// (default "HOSTNAME's room" in the system language). `None`, with a warning printed, when
/// it cannot be announced: hosting goes on without it.
pub fn announce(
    local: SocketAddr,
    fingerprint: Fingerprint,
    room_name: Option<&str>,
) -> Option<Announcer> {
    let name = match room_name {
        Some(name) => name.to_owned(),
        None => Lang::from_env().default_room_name(&tertulia_core::discovery::local_host_name()),
    };
    let advert = Advert {
        room_name: name,
        port: local.port(),
        fingerprint: fingerprint.to_string(),
        version: PROTOCOL_VERSION,
    };
    match Announcer::start_for(advert, local.ip()) {
        Ok(announcer) => {
            println!(
                "announced on the LAN as \"{}\" (mDNS {})",
                announcer.room_name(),
                announcer.instance()
            );
            Some(announcer)
        }
        Err(e) => {
            eprintln!("warning: the room is not announced on the LAN: {e}");
            None
        }
    }
}

/// Withdraw an announcement (goodbye packets) without blocking the runtime.
pub async fn withdraw(announcer: Option<Announcer>) {
    if let Some(announcer) = announcer {
        let _ = tokio::task::spawn_blocking(move || announcer.stop()).await;
        println!("no longer announced on the LAN");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use tertulia_core::discovery::{DiscoveryError, FoundRoom};

    fn room() -> FoundRoom {
        FoundRoom {
            instance: "Sala de Ana._tertulia._tcp.local.".into(),
            room_name: "Sala de Ana".into(),
            host: "ana.local".into(),
            addresses: vec![
                "10.77.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap(),
            ],
            port: 5555,
            version: PROTOCOL_VERSION,
            fingerprint: "6521-fc47-c9b6-6c07-b6a2-96fc".into(),
        }
    }

    #[test]
    fn json_events_carry_the_room_and_a_ready_address() {
        let found = json_event(&DiscoveryEvent::Found(room()));
        assert_eq!(found["type"], "room_found");
        assert_eq!(found["room"], "Sala de Ana");
        assert_eq!(found["address"], "10.77.0.2:5555");
        assert_eq!(found["addresses"][1], "fd00::2");
        assert_eq!(found["fingerprint"], "6521-fc47-c9b6-6c07-b6a2-96fc");
        assert_eq!(found["version"], PROTOCOL_VERSION);
        let lost = json_event(&DiscoveryEvent::Lost {
            instance: "x".into(),
        });
        assert_eq!(
            lost,
            serde_json::json!({"type": "room_lost", "instance": "x"})
        );
    }

    #[test]
    fn room_lines_speak_both_languages() {
        let en = Lang::En.discover_room(&room(), false, PROTOCOL_VERSION);
        assert!(en.contains("\"Sala de Ana\" on ana.local at 10.77.0.2:5555, [fd00::2]:5555"));
        assert!(en.contains(
            "join: tertulia-chat 10.77.0.2:5555 --nick NAME --host-identity 6521-fc47-c9b6-6c07-b6a2-96fc"
        ));
        let mut unnamed = room();
        unnamed.fingerprint.clear();
        let en = Lang::En.discover_room(&unnamed, false, PROTOCOL_VERSION);
        assert!(
            en.ends_with("join: tertulia-chat 10.77.0.2:5555 --nick NAME"),
            "{en}"
        );
        let es = Lang::Es.discover_room(&room(), false, PROTOCOL_VERSION);
        assert!(es.contains("«Sala de Ana» en ana.local"));
        assert!(es.contains("identidad del anfitrión 6521-fc47"));
        let old = Lang::Es.discover_room(&room(), false, PROTOCOL_VERSION + 1);
        assert!(old.contains("hace falta otra versión"));
        assert!(!old.contains("entrar:"));
        assert_eq!(Lang::Es.discover_lost("Sala"), "- «Sala» ya no está");
        assert_eq!(Lang::Es.default_room_name("nas"), "Sala de nas");
        assert_eq!(Lang::En.default_room_name("nas"), "nas's room");
        assert!(Lang::Es
            .discovery_error(&DiscoveryError::NoNetwork)
            .contains("bucle local"));
    }
}
