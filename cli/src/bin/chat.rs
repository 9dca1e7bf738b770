//! `tertulia-chat`: the terminal client, interactive or as a JSON-lines program.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Parser;
use serde_json::json;
use tertulia_cli::render::{self, Style};
use tertulia_cli::{exit, obtain_passphrase, parse_server_addr};
use tertulia_core::client::{
    self, ClientConfig, ClientEvent, ClientHandle, DisconnectReason, SendError,
};
use tertulia_core::outbox::MAX_OUTBOX;
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing_subscriber::EnvFilter;

/// Join a Tertulia chat room from the terminal.
///
/// The room passphrase is read from --passphrase-file, else the TERTULIA_PASSPHRASE
/// environment variable, else a hidden prompt.
///
/// Interactive commands: /who (online list), /quit (leave), /help.
///
/// Exit codes: 0 left normally, 1 other error, 2 bad arguments, 3 wrong passphrase,
/// 4 nickname rejected (with --json or without a terminal), 5 gave up reconnecting.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Server address: HOST:PORT, HOST (port 5555) or [IPv6]:PORT.
    #[arg(value_parser = parse_server_addr)]
    server: String,
    /// Your nickname in the room (unique, case-insensitive, at most 32 characters).
    #[arg(long)]
    nick: String,
    /// File whose content (trimmed) is the room passphrase.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
    /// Machine mode: stdin lines are messages, stdout is one JSON event per line; on stdin EOF
    /// wait until every message is acknowledged, then exit.
    #[arg(long)]
    json: bool,
    /// Give up after this many failed connection attempts in a row (default: never).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    give_up_after: Option<u32>,
    /// Never use colours (also honoured: the NO_COLOR environment variable).
    #[arg(long)]
    no_color: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    std::process::exit(run(args).await);
}

async fn run(args: Args) -> i32 {
    if let Err(e) = tertulia_core::text::validate_nick(&args.nick) {
        eprintln!("error: invalid nickname: {e}");
        return exit::USAGE;
    }
    let passphrase = match obtain_passphrase(args.passphrase_file.as_deref(), "Room passphrase: ") {
        Ok(Some((pass, _))) => pass,
        Ok(None) => {
            eprintln!("error: {}", tertulia_cli::PassphraseSourceError::Missing);
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let mut config = ClientConfig::new(args.server.clone(), args.nick.clone(), passphrase);
    config.give_up_after = args.give_up_after;
    let (handle, events) = client::spawn(config);
    if args.json {
        json_mode(handle, events).await
    } else {
        let color = !args.no_color
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stdout().is_terminal();
        let can_prompt = std::io::stdin().is_terminal();
        interactive(handle, events, Style { color }, can_prompt).await
    }
}

fn exit_code(reason: DisconnectReason) -> i32 {
    match reason {
        DisconnectReason::Quit => exit::OK,
        DisconnectReason::WrongPassphrase => exit::WRONG_PASSPHRASE,
        DisconnectReason::GaveUp => exit::GAVE_UP,
        DisconnectReason::Fatal => exit::ERROR,
    }
}

/// Shared end-of-session handling: a refused nickname that cannot be replaced makes the client
/// leave (exit code 4 once it has disconnected); `disconnected` yields the process exit code.
async fn give_up_or_finish(
    event: &ClientEvent,
    handle: &ClientHandle,
    nick_rejected: &mut bool,
) -> Option<i32> {
    match event {
        ClientEvent::NickRejected { .. } => {
            *nick_rejected = true;
            handle.disconnect().await;
            None
        }
        ClientEvent::Disconnected { reason, .. } => Some(if *nick_rejected {
            exit::NICK_REJECTED
        } else {
            exit_code(*reason)
        }),
        _ => None,
    }
}

fn print_json(value: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    if let Ok(line) = serde_json::to_string(value) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Acks free outbox room (a welcome after reconnecting carries them too).
fn makes_room(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::Acked { .. } | ClientEvent::Connected { .. }
    )
}

/// Queue a stdin line and print the outcome. A full outbox gives the line back, to be held
/// (with stdin unread) until acks make room: piped input is slowed down, never dropped.
async fn send_json(handle: &ClientHandle, line: String) -> Option<String> {
    match handle.send(&line).await {
        Ok(id) => print_json(&json!({"type": "queued", "id": id, "text": line})),
        Err(SendError::OutboxFull(_)) => return Some(line),
        Err(e) => {
            print_json(&json!({"type": "send_failed", "text": line, "message": e.to_string()}))
        }
    }
    None
}

/// Stdin lines → messages; events → JSON lines on stdout.
async fn json_mode(
    handle: ClientHandle,
    mut events: tokio::sync::mpsc::Receiver<ClientEvent>,
) -> i32 {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut nick_rejected = false;
    // A line the outbox had no room for; stdin is not read until it is queued.
    let mut held: Option<String> = None;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open && held.is_none() => match line {
                Ok(Some(line)) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    held = send_json(&handle, line).await;
                }
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    handle.disconnect_when_flushed().await;
                }
            },
            event = events.recv() => {
                let Some(event) = event else { return exit::ERROR };
                print_json(&event);
                if makes_room(&event) {
                    if let Some(line) = held.take() {
                        held = send_json(&handle, line).await;
                    }
                }
                if let Some(code) = give_up_or_finish(&event, &handle, &mut nick_rejected).await {
                    return code;
                }
            }
            _ = tokio::signal::ctrl_c() => handle.disconnect().await,
        }
    }
}

/// Queue a typed line; a full outbox gives it back to be held until there is room.
async fn send_line(handle: &ClientHandle, style: Style, line: String) -> Option<String> {
    match handle.send(&line).await {
        Ok(_) => None,
        Err(SendError::OutboxFull(_)) => Some(line),
        Err(e) => {
            println!("{}", style.warn(&format!("not sent: {e}")));
            None
        }
    }
}

/// A coloured, line-based chat on the terminal.
async fn interactive(
    handle: ClientHandle,
    mut events: tokio::sync::mpsc::Receiver<ClientEvent>,
    style: Style,
    can_prompt: bool,
) -> i32 {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut awaiting_nick = false;
    let mut nick_rejected = false;
    let mut online: Vec<String> = Vec::new();
    let mut own_nick = String::new();
    // A line the outbox had no room for; stdin is not read until it is queued.
    let mut held: Option<String> = None;
    println!(
        "{}",
        style.notice("type a message and press Enter; /who lists who is online, /older shows earlier messages, /quit leaves")
    );
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open && held.is_none() => match line {
                Ok(Some(line)) => {
                    let trimmed = line.trim();
                    if awaiting_nick {
                        match handle.set_nick(trimmed).await {
                            Ok(()) => awaiting_nick = false,
                            Err(e) => println!("{}", style.warn(&format!("{e}. Type another nickname:"))),
                        }
                        continue;
                    }
                    match trimmed {
                        "" => {}
                        "/quit" | "/exit" => handle.disconnect().await,
                        "/who" => println!("{}", style.notice(&format!("online ({}): {}", online.len(),
                            online.iter().map(|n| render::sanitize(n)).collect::<Vec<_>>().join(", ")))),
                        "/older" => handle.load_older().await,
                        "/help" => println!("{}", style.notice("/who: who is online · /older: earlier messages · /quit: leave · anything else is sent to the room")),
                        _ => {
                            held = send_line(&handle, style, line).await;
                            if held.is_some() {
                                println!("{}", style.notice(&format!("{MAX_OUTBOX} messages are waiting for the room; yours goes out when there is room")));
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    handle.disconnect_when_flushed().await;
                }
            },
            event = events.recv() => {
                let Some(event) = event else { return exit::ERROR };
                match &event {
                    ClientEvent::Online { members } => online = members.clone(),
                    ClientEvent::Connected { nick, .. } => own_nick = nick.clone(),
                    _ => {}
                }
                if let Some(text) = render::event(style, &event, &own_nick) {
                    println!("{text}");
                }
                if makes_room(&event) {
                    if let Some(line) = held.take() {
                        held = send_line(&handle, style, line).await;
                    }
                }
                if matches!(event, ClientEvent::NickRejected { .. }) && can_prompt && stdin_open {
                    awaiting_nick = true;
                } else if let Some(code) = give_up_or_finish(&event, &handle, &mut nick_rejected).await {
                    return code;
                }
            }
            _ = tokio::signal::ctrl_c() => handle.disconnect().await,
        }
    }
}
