//! `tertulia-chat`: the terminal client, interactive or as a JSON-lines program.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use serde_json::json;
use tertulia_cli::lang::Lang;
use tertulia_cli::render::{self, Style};
use tertulia_cli::{
    exit, file_command, obtain_passphrase, parse_target, AutoFetch, AutoFetchDecision, FileCommand,
    PassphraseSourceError, Target,
};
use tertulia_core::client::MAX_OUTBOX;
use tertulia_core::client::{
    self, ClientConfig, ClientEvent, ClientHandle, DisconnectReason, FetchTarget, SendError,
    TransferDirection,
};
use tertulia_core::identity::Fingerprint;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;
use tracing_subscriber::EnvFilter;

/// Join a Tertulia chat room from the terminal.
///
/// The room passphrase is read from an invite code given as the server, else from
/// --passphrase-file, else the TERTULIA_PASSPHRASE environment variable, else a hidden prompt.
///
/// Messages follow the system language (LC_ALL, then LC_MESSAGES, then LANG: es* is Spanish,
/// anything else English) unless --lang says otherwise; this help and --json output are
/// always English.
///
/// Interactive commands: /who (online list), /older (earlier messages), /send PATH (share a
/// file), /get ID (fetch a file by its id), /cancel [ID] (stop the upload or download ID, or
/// every transfer), /quit (leave), /help. Files shared live are fetched into --download-dir
/// on their own, never overwriting a file there, within --auto-fetch-mib,
/// --auto-fetch-budget-mib and --auto-fetch-count (others are announced with their /get ID);
/// no download starts that would leave less than --min-free-mib free there.
///
/// In --json output file ids are decimal strings ("file_id":"1234…", and "id" of a
/// download's file_progress and file_failed): they are random 64-bit numbers, which
/// JavaScript and other double-based readers would round. /get and /cancel take them quoted
/// or not. Upload ids (the client's own counter from 1) are numbers.
///
/// Rooms on this network: `tertulia-chat --discover [--json] [--discover-secs N]` lists them
/// as they appear (see `tertulia-chat --discover --help`).
///
/// Exit codes: 0 left normally, 1 other error, 2 bad arguments, 3 wrong passphrase,
/// 4 nickname rejected (with --json or without a terminal), 5 gave up reconnecting.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Server address: HOST:PORT, HOST (port 5555) or [IPv6]:PORT; or an invite code,
    /// tertulia://HOST:PORT#PASSPHRASE, as the app shows it (quote it for the shell). With an
    /// invite code the passphrase is the code's: --passphrase-file is then an error and
    /// TERTULIA_PASSPHRASE is ignored. Other users of this computer can see command-line
    /// arguments (ps), so on a shared machine prefer an address and --passphrase-file.
    server: String,
    /// Your nickname in the room (unique, case-insensitive, at most 32 characters).
    #[arg(long)]
    nick: String,
    /// File whose content (trimmed) is the room passphrase.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
    /// Machine mode: stdin lines are messages (or `/send PATH`, `/get ID`, `/cancel [ID]`),
    /// stdout is one JSON event per line (file ids as strings); on stdin EOF wait until every
    /// message is acknowledged and every transfer has ended, then exit.
    #[arg(long)]
    json: bool,
    /// Where received files are saved (default: the user's download directory, else the
    /// current directory). Files shared live are fetched on their own; earlier ones with
    /// `/get ID`.
    #[arg(long, value_name = "DIR")]
    download_dir: Option<PathBuf>,
    /// Live files larger than this (MiB) are not fetched on their own, only announced with
    /// their `/get ID` (0: none is fetched on its own).
    #[arg(long, value_name = "MiB", default_value_t = 100)]
    auto_fetch_mib: u64,
    /// At most this many MiB of live files are fetched on their own in one session; later
    /// ones wait for `/get ID`.
    #[arg(long, value_name = "MiB", default_value_t = 1024)]
    auto_fetch_budget_mib: u64,
    /// At most this many live files are fetched on their own in one session; later ones wait
    /// for `/get ID`.
    #[arg(long, value_name = "N", default_value_t = 200)]
    auto_fetch_count: u32,
    /// No download (on its own or by `/get`) starts that would leave less than this many MiB
    /// free on the download folder's filesystem: it fails at once, with reason local_space.
    #[arg(long, value_name = "MiB", default_value_t = 256)]
    min_free_mib: u64,
    /// Give up after this many failed connection attempts in a row (default: never).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    give_up_after: Option<u32>,
    /// Never use colours (also honoured: the NO_COLOR environment variable).
    #[arg(long)]
    no_color: bool,
    /// Language of the messages (default: the system's, from LC_ALL, LC_MESSAGES or LANG).
    #[arg(long, value_enum, value_name = "LANG")]
    lang: Option<Lang>,
    /// The file of pinned host identities (default: known_hosts in the user's data
    /// directory, e.g. ~/.local/share/tertulia/chat/known_hosts).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Accept exactly this new host identity (the fingerprint the host shows, e.g.
    /// 3f2a-91c0-5b7e-0d44-a1c9-77e2) and pin it, replacing the old one: only after checking
    /// with the host that its identity really changed.
    #[arg(long, value_name = "FINGERPRINT")]
    accept_new_host: Option<Fingerprint>,
    /// Join only a host with exactly this identity (the fingerprint it shows or announces on
    /// the network, e.g. 3f2a-91c0-5b7e-0d44-a1c9-77e2), as an invite code does: no
    /// trust-on-first-use window.
    #[arg(long, value_name = "FINGERPRINT")]
    host_identity: Option<Fingerprint>,
}

/// Where the pins are kept when --known-hosts is not given.
fn default_known_hosts() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("tertulia").join("chat").join("known_hosts"))
}

#[tokio::main]
async fn main() {
    // `--discover` lists rooms on the LAN instead of joining one (its own arguments).
    if tertulia_cli::discover::requested() {
        std::process::exit(tertulia_cli::discover::main().await);
    }
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
    let lang = args.lang.unwrap_or_else(Lang::from_env);
    let fail = |text: String, code: i32| {
        eprintln!("{}", lang.error_line(&text));
        code
    };
    if let Err(e) = tertulia_core::text::validate_nick(&args.nick) {
        return fail(lang.invalid_nick(e), exit::USAGE);
    }
    let target = match parse_target(&args.server) {
        Ok(target) => target,
        Err(e) => return fail(lang.target_error(&e), exit::USAGE),
    };
    let expected_host;
    let (server, passphrase) = match target {
        Target::Invite { .. } if args.passphrase_file.is_some() => {
            return fail(lang.invite_and_passphrase_file(), exit::USAGE);
        }
        Target::Invite {
            addr,
            fingerprint,
            passphrase,
        } => {
            // The code's fingerprint leaves no trust-on-first-use window; it does not
            // replace another pin (only --accept-new-host does: the user checked with the host).
            if let (Some(code), Some(given)) = (fingerprint, args.host_identity) {
                if code != given {
                    return fail(lang.invite_and_host_identity(), exit::USAGE);
                }
            }
            expected_host = fingerprint.or(args.host_identity);
            if std::env::var_os(tertulia_cli::PASSPHRASE_ENV).is_some() {
                tracing::info!(
                    "{} is ignored: the invite code carries the passphrase",
                    tertulia_cli::PASSPHRASE_ENV
                );
            }
            match tertulia_core::passphrase::normalize(&passphrase) {
                Ok(pass) => (addr, pass.to_owned()),
                Err(e) => return fail(lang.passphrase_error(&e), exit::USAGE),
            }
        }
        Target::Address(addr) => {
            expected_host = args.host_identity;
            match obtain_passphrase(args.passphrase_file.as_deref(), &lang.passphrase_prompt()) {
                Ok(Some((pass, _))) => (addr, pass),
                Ok(None) => {
                    return fail(
                        lang.passphrase_source_error(&PassphraseSourceError::Missing),
                        exit::USAGE,
                    )
                }
                Err(e) => return fail(lang.passphrase_source_error(&e), exit::ERROR),
            }
        }
    };
    let mut config = ClientConfig::new(server, args.nick.clone(), passphrase);
    config.give_up_after = args.give_up_after;
    config.expected_host = expected_host;
    config.accept_new_host = args.accept_new_host;
    config.known_hosts = args.known_hosts.clone().or_else(default_known_hosts);
    config.min_free_bytes = args.min_free_mib.saturating_mul(1 << 20);
    if config.known_hosts.is_none() {
        tracing::warn!("no data directory found: host identities are pinned for this run only (use --known-hosts FILE)");
    }
    let download_dir = args
        .download_dir
        .clone()
        .or_else(dirs::download_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(e) = std::fs::create_dir_all(&download_dir) {
        tracing::warn!(dir = %download_dir.display(), "cannot create the download directory: {e}");
    }
    let files = Files {
        dir: download_dir,
        auto: AutoFetch::new(
            args.auto_fetch_mib.saturating_mul(1 << 20),
            args.auto_fetch_budget_mib.saturating_mul(1 << 20),
            args.auto_fetch_count,
        ),
    };
    let (handle, events) = client::spawn(config);
    if args.json {
        json_mode(handle, events, files).await
    } else {
        let color = !args.no_color
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stdout().is_terminal();
        let can_prompt = std::io::stdin().is_terminal();
        interactive(handle, events, Style { color }, lang, can_prompt, files).await
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

/// Queue `line`; while the outbox is full, wait until `room` says acks have made room and try
/// again, so input is slowed down, never dropped. `Err` for any other refusal.
async fn send_when_room(
    handle: &ClientHandle,
    room: &Notify,
    line: &str,
) -> Result<u64, SendError> {
    loop {
        match handle.send(line).await {
            Err(SendError::OutboxFull(_)) => room.notified().await,
            result => return result,
        }
    }
}

/// Where received files go, and which live files are fetched on their own.
struct Files {
    dir: PathBuf,
    auto: AutoFetch,
}

/// What became of a live file offered by someone else.
enum Live {
    /// Being fetched.
    Fetching,
    /// Not fetched on its own (too large, or past the session's budget): `/get` fetches it.
    Skipped {
        file_id: u64,
        name: String,
        size: u64,
        why: AutoFetchDecision,
    },
}

impl Files {
    /// A file shared live (by someone else) is fetched into the download folder on its own
    /// within the limits; earlier ones, and ones past the limits, wait for `/get`. The request
    /// runs apart from the event loop (the client may be waiting for its events to be taken);
    /// `failed` hears why it could not be queued.
    fn on_event(
        &mut self,
        handle: &ClientHandle,
        event: &ClientEvent,
        failed: impl FnOnce(u64, SendError) + Send + 'static,
    ) -> Option<Live> {
        let ClientEvent::FileOffered {
            file_id,
            name,
            size,
            own: false,
            history: false,
            ..
        } = event
        else {
            return None;
        };
        match self.auto.decide(*size) {
            AutoFetchDecision::Fetch => {
                fetch(handle, *file_id, &self.dir, failed);
                Some(Live::Fetching)
            }
            why => Some(Live::Skipped {
                file_id: *file_id,
                name: name.clone(),
                size: *size,
                why,
            }),
        }
    }
}

fn fetch(
    handle: &ClientHandle,
    file_id: u64,
    dir: &std::path::Path,
    failed: impl FnOnce(u64, SendError) + Send + 'static,
) {
    let (handle, target) = (handle.clone(), FetchTarget::Folder(dir.to_path_buf()));
    tokio::spawn(async move {
        if let Err(e) = handle.fetch_file(file_id, target).await {
            failed(file_id, e);
        }
    });
}

/// A transfer as `--json` names it: upload ids are numbers, file ids decimal strings.
fn transfer_json(direction: TransferDirection, id: u64) -> serde_json::Value {
    match direction {
        TransferDirection::Upload => json!({"direction": "upload", "id": id}),
        TransferDirection::Download => json!({"direction": "download", "id": id.to_string()}),
    }
}

/// Stdin lines → messages (or file commands); events → JSON lines on stdout.
///
/// Stdin is read by its own task: a `send` waits for the client, and the client may be waiting
/// for its events to be taken, so one loop doing both could stall for good.
async fn json_mode(
    handle: ClientHandle,
    mut events: tokio::sync::mpsc::Receiver<ClientEvent>,
    mut files: Files,
) -> i32 {
    let room = Arc::new(Notify::new());
    let fetch_failed = |file_id: u64, e: SendError| {
        print_json(
            &json!({"type": "fetch_failed", "file_id": file_id.to_string(), "message": e.to_string()}),
        )
    };
    let input = tokio::spawn({
        let (handle, room, dir) = (handle.clone(), room.clone(), files.dir.clone());
        async move {
            let mut stdin = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = stdin.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                match file_command(&line) {
                    Some(FileCommand::Send(path)) => {
                        match handle.send_file(path.clone()).await {
                            Ok(id) => print_json(
                                &json!({"type": "file_queued", "upload_id": id, "path": path}),
                            ),
                            Err(e) => print_json(
                                &json!({"type": "send_failed", "text": line, "message": e.to_string()}),
                            ),
                        }
                        continue;
                    }
                    Some(FileCommand::Get(file_id)) => {
                        match handle
                            .fetch_file(file_id, FetchTarget::Folder(dir.clone()))
                            .await
                        {
                            Ok(()) => print_json(
                                &json!({"type": "fetch_queued", "file_id": file_id.to_string()}),
                            ),
                            Err(e) => fetch_failed(file_id, e),
                        }
                        continue;
                    }
                    Some(FileCommand::Cancel(id)) => {
                        match handle.cancel_transfers(id).await {
                            Ok(stopped) if !stopped.is_empty() => {
                                let stopped: Vec<serde_json::Value> = stopped
                                    .into_iter()
                                    .map(|(direction, id)| transfer_json(direction, id))
                                    .collect();
                                print_json(&json!({"type": "cancelled", "transfers": stopped}))
                            }
                            Ok(_) => print_json(&json!({
                                "type": "cancel_failed",
                                "id": id.map(|id| id.to_string()),
                                "message": "no such transfer in progress",
                            })),
                            Err(e) => print_json(&json!({
                                "type": "cancel_failed",
                                "id": id.map(|id| id.to_string()),
                                "message": e.to_string(),
                            })),
                        }
                        continue;
                    }
                    Some(FileCommand::Usage) => {
                        print_json(
                            &json!({"type": "send_failed", "text": line, "message": "usage: /send PATH, /get ID or /cancel [ID]"}),
                        );
                        continue;
                    }
                    None => {}
                }
                match send_when_room(&handle, &room, &line).await {
                    Ok(id) => print_json(&json!({"type": "queued", "id": id, "text": line})),
                    Err(e) => print_json(
                        &json!({"type": "send_failed", "text": line, "message": e.to_string()}),
                    ),
                }
            }
            handle.disconnect_when_flushed().await;
        }
    });
    let mut nick_rejected = false;
    let code = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break exit::ERROR };
                print_json(&event.to_json());
                if let Some(Live::Skipped { file_id, name, size, why }) =
                    files.on_event(&handle, &event, fetch_failed)
                {
                    print_json(&json!({
                        "type": "fetch_skipped",
                        "file_id": file_id.to_string(),
                        "name": name,
                        "size": size,
                        "reason": why.as_str(),
                    }));
                }
                if makes_room(&event) {
                    room.notify_one();
                }
                if let Some(code) = give_up_or_finish(&event, &handle, &mut nick_rejected).await {
                    break code;
                }
            }
            _ = tokio::signal::ctrl_c() => handle.disconnect().await,
        }
    };
    input.abort();
    code
}

/// What the terminal's input task and its event loop share.
#[derive(Default)]
struct Shared {
    /// Outbox room was made (acks).
    room: Notify,
    /// The next line typed is a new nickname (the last one was refused).
    awaiting_nick: AtomicBool,
    /// Stdin has not ended.
    stdin_open: AtomicBool,
    /// Who is online, for `/who`.
    online: Mutex<Vec<String>>,
}

/// Typed lines: commands, a new nickname when asked, or messages (held while the outbox is
/// full, with a notice). Runs apart from the event loop, like [`json_mode`]'s input.
async fn read_terminal(
    handle: ClientHandle,
    style: Style,
    lang: Lang,
    shared: Arc<Shared>,
    download_dir: PathBuf,
) {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        let trimmed = line.trim();
        if shared.awaiting_nick.load(Ordering::Acquire) {
            match handle.set_nick(trimmed).await {
                Ok(()) => shared.awaiting_nick.store(false, Ordering::Release),
                Err(e) => println!("{}", style.warn(&lang.nick_retry(&e))),
            }
            continue;
        }
        match trimmed {
            "" => {}
            "/quit" | "/exit" => handle.disconnect().await,
            "/who" => {
                let online = shared.online.lock().map(|o| o.clone()).unwrap_or_default();
                let names: Vec<String> = online.iter().map(|n| render::sanitize(n)).collect();
                println!("{}", style.notice(&lang.online(&names)));
            }
            "/older" => handle.load_older().await,
            "/help" => println!("{}", style.notice(&lang.help())),
            _ if file_command(trimmed).is_some() => {
                file_line(&handle, style, lang, trimmed, &download_dir).await
            }
            _ => {
                let result = match handle.send(&line).await {
                    Err(SendError::OutboxFull(_)) => {
                        println!("{}", style.notice(&lang.outbox_full_waiting(MAX_OUTBOX)));
                        send_when_room(&handle, &shared.room, &line).await
                    }
                    result => result,
                };
                if let Err(e) = result {
                    println!("{}", style.warn(&lang.not_sent(&e)));
                }
            }
        }
    }
    shared.stdin_open.store(false, Ordering::Release);
    handle.disconnect_when_flushed().await;
}

/// `/send PATH`, `/get ID` or `/cancel [ID]` typed at the terminal.
async fn file_line(
    handle: &ClientHandle,
    style: Style,
    lang: Lang,
    line: &str,
    download_dir: &std::path::Path,
) {
    match file_command(line) {
        Some(FileCommand::Send(path)) => match handle.send_file(path.clone()).await {
            Ok(_) => {
                let name = path
                    .file_name()
                    .unwrap_or(path.as_os_str())
                    .to_string_lossy();
                println!(
                    "{}",
                    style.notice(&lang.file_queued(&render::sanitize(&name)))
                )
            }
            Err(e) => println!("{}", style.warn(&lang.not_sent(&e))),
        },
        Some(FileCommand::Get(file_id)) => {
            let target = FetchTarget::Folder(download_dir.to_path_buf());
            match handle.fetch_file(file_id, target).await {
                Ok(()) => println!("{}", style.notice(&lang.fetch_queued(file_id))),
                Err(e) => println!("{}", style.warn(&lang.send_error(&e))),
            }
        }
        Some(FileCommand::Cancel(id)) => match handle.cancel_transfers(id).await {
            Ok(stopped) if !stopped.is_empty() => {
                println!("{}", style.notice(&lang.cancelled(stopped.len())))
            }
            Ok(_) => println!("{}", style.warn(&lang.nothing_to_cancel(id))),
            Err(e) => println!("{}", style.warn(&lang.send_error(&e))),
        },
        Some(FileCommand::Usage) | None => {
            println!("{}", style.warn(&lang.file_command_usage()))
        }
    }
}

/// A coloured, line-based chat on the terminal.
async fn interactive(
    handle: ClientHandle,
    mut events: tokio::sync::mpsc::Receiver<ClientEvent>,
    style: Style,
    lang: Lang,
    can_prompt: bool,
    mut files: Files,
) -> i32 {
    let shared = Arc::new(Shared::default());
    shared.stdin_open.store(true, Ordering::Release);
    println!("{}", style.notice(&lang.interactive_intro()));
    let input = tokio::spawn(read_terminal(
        handle.clone(),
        style,
        lang,
        shared.clone(),
        files.dir.clone(),
    ));
    let mut progress = render::ProgressLines::default();
    let fetch_failed = move |_: u64, e: SendError| println!("{}", style.warn(&lang.send_error(&e)));
    let mut nick_rejected = false;
    let code = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break exit::ERROR };
                if let ClientEvent::Online { members } = &event {
                    if let Ok(mut online) = shared.online.lock() {
                        online.clone_from(members);
                    }
                }
                if let Some(text) = render::event(style, lang, &event) {
                    println!("{text}");
                }
                if let Some(text) = progress.line(style, lang, &event) {
                    println!("{text}");
                }
                if let Some(Live::Skipped { file_id, name, why, .. }) =
                    files.on_event(&handle, &event, fetch_failed)
                {
                    let budget = why == AutoFetchDecision::Budget;
                    let text = lang.fetch_skipped(&render::sanitize(&name), file_id, budget);
                    println!("{}", style.notice(&text));
                }
                if makes_room(&event) {
                    shared.room.notify_one();
                }
                if matches!(event, ClientEvent::NickRejected { .. })
                    && can_prompt
                    && shared.stdin_open.load(Ordering::Acquire)
                {
                    shared.awaiting_nick.store(true, Ordering::Release);
                } else if let Some(code) = give_up_or_finish(&event, &handle, &mut nick_rejected).await {
                    break code;
                }
            }
            _ = tokio::signal::ctrl_c() => handle.disconnect().await,
        }
    };
    input.abort();
    code
}
