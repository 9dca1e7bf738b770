//! Shared pieces of the `tertulia-server` and `tertulia-chat` binaries: where the passphrase
//! comes from, address and invite-code parsing, exit codes, the client's messages in English
//! and Spanish (`lang`), and safe rendering of peer text on a terminal.

use std::io::IsTerminal;
use std::path::Path;

use tertulia_core::invite::{Invite, InviteError};
use thiserror::Error;

pub mod discover;
pub mod lang;
pub mod render;

/// Default port, as in the original chat systems.
pub const DEFAULT_PORT: u16 = 5555;
/// Environment variable holding the room passphrase.
pub const PASSPHRASE_ENV: &str = "TERTULIA_PASSPHRASE";

/// Process exit codes of `tertulia-chat` (documented in the README).
pub mod exit {
    pub const OK: i32 = 0;
    /// Any other fatal error (not a Tertulia server, unreadable passphrase file…).
    pub const ERROR: i32 = 1;
    /// Bad command-line arguments (clap's own code).
    pub const USAGE: i32 = 2;
    pub const WRONG_PASSPHRASE: i32 = 3;
    pub const NICK_REJECTED: i32 = 4;
    pub const GAVE_UP: i32 = 5;
}

#[derive(Debug, Error)]
pub enum PassphraseSourceError {
    #[error("cannot read passphrase file {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("could not read the passphrase from the terminal: {0}")]
    Prompt(std::io::Error),
    #[error("no passphrase: use --passphrase-file PATH, set {PASSPHRASE_ENV} or give an invite code (stdin is not a terminal, so there is no prompt)")]
    Missing,
    #[error("{0}")]
    Invalid(#[from] tertulia_core::passphrase::PassphraseError),
}

/// Where a passphrase came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseSource {
    File,
    Env,
    Prompt,
}

/// The passphrase from `--passphrase-file`, else `TERTULIA_PASSPHRASE`, else a hidden prompt
/// when stdin is a terminal. `Ok(None)`: none of them is available.
pub fn obtain_passphrase(
    file: Option<&Path>,
    prompt: &str,
) -> Result<Option<(String, PassphraseSource)>, PassphraseSourceError> {
    let (raw, source) = if let Some(path) = file {
        let raw = std::fs::read_to_string(path).map_err(|error| PassphraseSourceError::File {
            path: path.display().to_string(),
            error,
        })?;
        (raw, PassphraseSource::File)
    } else if let Ok(raw) = std::env::var(PASSPHRASE_ENV) {
        (raw, PassphraseSource::Env)
    } else if std::io::stdin().is_terminal() {
        (
            rpassword::prompt_password(prompt).map_err(PassphraseSourceError::Prompt)?,
            PassphraseSource::Prompt,
        )
    } else {
        return Ok(None);
    };
    let passphrase = tertulia_core::passphrase::normalize(&raw)?.to_owned();
    Ok(Some((passphrase, source)))
}

/// Why a server address cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AddressError {
    #[error("the server address is empty")]
    Empty,
    #[error("unclosed '[' in the address")]
    UnclosedBracket,
    #[error("unexpected '{0}' after the IPv6 address")]
    AfterBracket(String),
    #[error("'{0}' is not a port number (1-65535)")]
    BadPort(String),
    #[error("'{0}' is not a valid host name or IP address")]
    BadHost(String),
}

/// Parse `HOST:PORT`, `HOST` (default port), `[v6]:PORT` or `[v6]`.
pub fn parse_server_addr(raw: &str) -> Result<String, AddressError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Ok(addr) = raw.parse::<std::net::SocketAddr>() {
        return Ok(addr.to_string());
    }
    if let Ok(ip) = raw.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, DEFAULT_PORT).to_string());
    }
    let (host, port) = match raw.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or(AddressError::UnclosedBracket)?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(AddressError::AfterBracket(after.to_owned())),
            }
        }
        None => match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        },
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AddressError::BadPort(p.to_owned()))?,
        None => DEFAULT_PORT,
    };
    if !tertulia_core::client::is_valid_host(host) {
        return Err(AddressError::BadHost(host.to_owned()));
    }
    Ok(tertulia_core::client::join_host_port(host, port))
}

/// What `tertulia-chat`'s server argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A server address (`host:port`); the passphrase comes from elsewhere.
    Address(String),
    /// An invite code: the server address, the host's fingerprint (if the code carries one)
    /// and the room passphrase, as the code carries them.
    Invite {
        addr: String,
        fingerprint: Option<tertulia_core::identity::Fingerprint>,
        passphrase: String,
    },
}

/// Why the server argument is unusable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TargetError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Invite(#[from] InviteError),
}

/// An invite code (anything starting with `tertulia://`), else a server address.
pub fn parse_target(raw: &str) -> Result<Target, TargetError> {
    match raw.parse::<Invite>() {
        Ok(invite) => {
            let addr = parse_server_addr(&tertulia_core::client::join_host_port(
                &invite.host,
                invite.port,
            ))?;
            Ok(Target::Invite {
                addr,
                fingerprint: invite.fingerprint,
                passphrase: invite.passphrase,
            })
        }
        Err(InviteError::NotAnInvite) => Ok(Target::Address(parse_server_addr(raw)?)),
        Err(e) => Err(e.into()),
    }
}

pub use tertulia_core::server::shareable_addresses;

/// A typed line that is a file command rather than a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    /// `/send PATH`: share this file (the rest of the line, spaces included).
    Send(std::path::PathBuf),
    /// `/get ID`: fetch the file with this id (listed from the history).
    Get(u64),
    /// `/cancel [ID]`: stop the upload with this upload id or the download of this file id;
    /// without one, every transfer.
    Cancel(Option<u64>),
    /// `/send`, `/get` or `/cancel` without a usable argument.
    Usage,
}

/// `/send PATH`, `/get ID` or `/cancel [ID]` (`None`: any other line, a message). An id may
/// be quoted, as `--json` prints file ids (`/get "1234"`).
pub fn file_command(line: &str) -> Option<FileCommand> {
    let line = line.trim();
    let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let id = || {
        let unquoted = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(rest);
        unquoted.parse::<u64>().ok()
    };
    match command {
        "/send" if rest.is_empty() => Some(FileCommand::Usage),
        "/send" => Some(FileCommand::Send(rest.into())),
        "/get" => Some(id().map_or(FileCommand::Usage, FileCommand::Get)),
        "/cancel" if rest.is_empty() => Some(FileCommand::Cancel(None)),
        "/cancel" => Some(id().map_or(FileCommand::Usage, |id| FileCommand::Cancel(Some(id)))),
        _ => None,
    }
}

/// Which live files `tertulia-chat` fetches on its own: each at most `max_bytes` (0: none at
/// all), and in all
/// at most `budget_bytes` and `budget_files` per session (counted when a fetch starts).
/// Files past a limit wait for `/get`, like files from the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoFetch {
    pub max_bytes: u64,
    pub budget_bytes: u64,
    pub budget_files: u32,
    used_bytes: u64,
    used_files: u32,
}

/// What [`AutoFetch::decide`] says about a live file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoFetchDecision {
    Fetch,
    /// Larger than `max_bytes`.
    TooLarge,
    /// The session's budget would be exceeded.
    Budget,
}

impl AutoFetchDecision {
    /// As `--json` names it in `fetch_skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoFetchDecision::Fetch => "fetch",
            AutoFetchDecision::TooLarge => "too_large",
            AutoFetchDecision::Budget => "budget",
        }
    }
}

impl AutoFetch {
    pub fn new(max_bytes: u64, budget_bytes: u64, budget_files: u32) -> Self {
        Self {
            max_bytes,
            budget_bytes,
            budget_files,
            used_bytes: 0,
            used_files: 0,
        }
    }

    /// Whether a live file of `size` bytes is fetched on its own; a fetch is counted.
    pub fn decide(&mut self, size: u64) -> AutoFetchDecision {
        if size > self.max_bytes || self.max_bytes == 0 {
            return AutoFetchDecision::TooLarge;
        }
        let bytes = self.used_bytes.saturating_add(size);
        if bytes > self.budget_bytes || self.used_files >= self.budget_files {
            return AutoFetchDecision::Budget;
        }
        self.used_bytes = bytes;
        self.used_files += 1;
        AutoFetchDecision::Fetch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            parse_server_addr("127.0.0.1:6000"),
            Ok("127.0.0.1:6000".into())
        );
        assert_eq!(parse_server_addr("127.0.0.1"), Ok("127.0.0.1:5555".into()));
        assert_eq!(parse_server_addr("::1"), Ok("[::1]:5555".into()));
        assert_eq!(parse_server_addr("[::1]:7"), Ok("[::1]:7".into()));
        assert_eq!(
            parse_server_addr("chat.example.org"),
            Ok("chat.example.org:5555".into())
        );
        assert_eq!(parse_server_addr(" host-1:80 "), Ok("host-1:80".into()));
        assert!(parse_server_addr("").is_err());
        assert!(parse_server_addr("host:0").is_err());
        assert!(parse_server_addr("host:99999").is_err());
        assert!(parse_server_addr("host:port").is_err());
        assert!(parse_server_addr("bad host:1").is_err());
        assert_eq!(
            parse_server_addr("[::1"),
            Err(AddressError::UnclosedBracket)
        );
    }

    #[test]
    fn targets_are_addresses_or_invite_codes() {
        assert_eq!(
            parse_target("127.0.0.1:6000"),
            Ok(Target::Address("127.0.0.1:6000".into()))
        );
        assert_eq!(
            parse_target(" tertulia://[::1]:7#50%25%20off "),
            Ok(Target::Invite {
                addr: "[::1]:7".into(),
                fingerprint: None,
                passphrase: "50% off".into()
            })
        );
        assert_eq!(
            parse_target("tertulia://h:1/6521fc47c9b66c07b6a296fc#p"),
            Ok(Target::Invite {
                addr: "h:1".into(),
                fingerprint: "6521-fc47-c9b6-6c07-b6a2-96fc".parse().ok(),
                passphrase: "p".into()
            })
        );
        assert_eq!(
            parse_target("tertulia://h:1#100%"),
            Err(TargetError::Invite(InviteError::DamagedEncoding))
        );
        assert_eq!(
            parse_target("tertulia://a..b:1#p"),
            Err(TargetError::Address(AddressError::BadHost("a..b".into())))
        );
        assert!(matches!(
            parse_target("host:port"),
            Err(TargetError::Address(AddressError::BadPort(_)))
        ));
    }

    #[test]
    fn file_commands_are_told_from_messages() {
        assert_eq!(
            file_command("/send /tmp/a b.png "),
            Some(FileCommand::Send("/tmp/a b.png".into()))
        );
        assert_eq!(file_command(" /get 42"), Some(FileCommand::Get(42)));
        assert_eq!(file_command("/get x"), Some(FileCommand::Usage));
        // File ids as --json prints them: text, above 2^53.
        assert_eq!(
            file_command("/get \"18446744073709551557\""),
            Some(FileCommand::Get(18_446_744_073_709_551_557))
        );
        assert_eq!(file_command("/get \"12"), Some(FileCommand::Usage));
        assert_eq!(file_command("/cancel"), Some(FileCommand::Cancel(None)));
        assert_eq!(
            file_command("/cancel 3"),
            Some(FileCommand::Cancel(Some(3)))
        );
        assert_eq!(
            file_command("/cancel \"9007199254740993\""),
            Some(FileCommand::Cancel(Some(9_007_199_254_740_993)))
        );
        assert_eq!(file_command("/cancel all"), Some(FileCommand::Usage));
        assert_eq!(file_command("/cancelled"), None);
        assert_eq!(file_command("/send"), Some(FileCommand::Usage));
        assert_eq!(file_command("/sender x"), None);
        assert_eq!(file_command("hello /send x"), None);
    }

    #[test]
    fn live_files_are_fetched_within_the_size_limit_and_the_session_budget() {
        use AutoFetchDecision::*;
        let mut auto = AutoFetch::new(100, 250, 3);
        assert_eq!(auto.decide(101), TooLarge);
        assert_eq!(auto.decide(100), Fetch);
        assert_eq!(auto.decide(100), Fetch);
        assert_eq!(auto.decide(51), Budget, "250 bytes in all");
        assert_eq!(auto.decide(50), Fetch);
        assert_eq!(auto.decide(0), Budget, "3 files in all");
        let mut none = AutoFetch::new(0, u64::MAX, u32::MAX);
        assert_eq!(none.decide(1), TooLarge);
        assert_eq!(none.decide(0), TooLarge, "0: nothing on its own");
    }

    #[test]
    fn passphrase_from_file_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "open sesame\n").unwrap();
        let (pass, source) = obtain_passphrase(Some(&path), "").unwrap().unwrap();
        assert_eq!(
            (pass.as_str(), source),
            ("open sesame", PassphraseSource::File)
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            obtain_passphrase(Some(&path), ""),
            Err(PassphraseSourceError::Invalid(_))
        ));
        assert!(matches!(
            obtain_passphrase(Some(&dir.path().join("missing")), ""),
            Err(PassphraseSourceError::File { .. })
        ));
    }
}
