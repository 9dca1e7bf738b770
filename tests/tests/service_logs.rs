//! `tertulia-server`'s log lines under systemd: when stderr is the journal (systemd sets
//! `JOURNAL_STREAM` to its device and inode), journald stamps each line, so the server's own
//! timestamp is left out; anywhere else (a terminal, a file, a stale `JOURNAL_STREAM` inherited
//! by a child) lines keep it. The real binary, its stderr a file standing in for the stream.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use tertulia_e2e::binary;

/// The server's stderr for a short run with `JOURNAL_STREAM` set to `stream(file)`.
fn stderr_with(stream: impl Fn(&std::fs::Metadata) -> String) -> String {
    let dir = tempfile::tempdir().expect("scratch");
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).expect("stderr file");
    let journal = stream(&file.metadata().expect("metadata"));
    // An in-memory room without --host-key warns once, at start, and a port that is taken
    // stops it right after.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let status = Command::new(binary("tertulia-server"))
        .args(["--in-memory", "--listen", &listen, "--generate-passphrase"])
        .env("JOURNAL_STREAM", journal)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .expect("run tertulia-server");
    assert_eq!(status.code(), Some(1), "the port was taken");
    std::fs::read_to_string(&path).expect("read stderr")
}

fn warning_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("WARN") && l.contains("--host-key"))
        .unwrap_or_else(|| panic!("no warning about --host-key in:\n{log}"))
}

#[test]
fn no_timestamp_of_its_own_when_stderr_is_the_journal() {
    let log = stderr_with(|m| format!("{}:{}", m.dev(), m.ino()));
    let line = warning_line(&log);
    assert!(line.trim_start().starts_with("WARN"), "{line}");
}

#[test]
fn timestamps_when_journal_stream_names_another_file() {
    let log = stderr_with(|m| format!("{}:{}", m.dev(), m.ino() + 1));
    let line = warning_line(&log);
    let stamp = line.split_whitespace().next().unwrap_or_default();
    assert!(
        stamp.len() > 20 && stamp.contains('T') && stamp.ends_with('Z'),
        "an RFC 3339 timestamp first: {line}"
    );
}
