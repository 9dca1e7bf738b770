//! Online guessing and noisy peers, over the wire against the real server: failed handshakes
//! are throttled per source address (growing delay, then `Reject(6)` with a retry time) without
//! locking out other addresses; the real client behind a throttled address says so in both
//! languages, waits, and gets in; a connection that handshakes and never joins is closed
//! within the handshake timeout.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tertulia_core::conn::ConnError;
use tertulia_core::hello::RejectCode;
use tertulia_core::message::ServerMessage;
use tertulia_e2e::{binary, ChatProcess, RawMember, ServerProcess, WAIT};

const PASS: &str = "online guessing passphrase";
const LOCKOUT_SECS: u16 = 6;
const MAX_FAILURES: usize = 5;

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("an IP address"))
}

/// Guess wrong from `source` until refused with `Reject(6)`; returns the retry time and how
/// long each refused guess took to be answered.
async fn guess_until_refused(server: &ServerProcess, source: &str) -> (u16, Vec<Duration>) {
    let mut answered_in = Vec::new();
    for _ in 0..MAX_FAILURES + 5 {
        let started = Instant::now();
        match RawMember::connect(server.addr, "a wrong guess", ip(source)).await {
            Err(ConnError::Rejected(Some(RejectCode::AuthenticationFailed))) => {
                answered_in.push(started.elapsed())
            }
            Err(ConnError::Throttled {
                retry_after_secs: Some(secs),
            }) => return (secs, answered_in),
            Err(other) => panic!("unexpected answer to a wrong guess: {other}"),
            Ok(_) => panic!("a wrong passphrase was accepted"),
        }
    }
    panic!("never refused after {} wrong guesses", answered_in.len());
}

#[tokio::test]
async fn failed_handshakes_are_throttled_per_address_and_the_real_client_says_so() {
    let lockout = LOCKOUT_SECS.to_string();
    let max = MAX_FAILURES.to_string();
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-failed-handshakes", &max, "--lockout-secs", &lockout],
    )
    .await;

    // The attacker guesses from 127.0.0.2: answers slow down, then the address is refused.
    let (retry_after, answered_in) = guess_until_refused(&server, "127.0.0.2").await;
    println!("wrong guesses answered in {answered_in:?}; then refused for {retry_after} s");
    assert_eq!(answered_in.len(), MAX_FAILURES, "refused at the limit");
    assert!((1..=LOCKOUT_SECS).contains(&retry_after), "{retry_after}");
    // A right passphrase from the refused address is refused too (before any handshake).
    assert!(matches!(
        RawMember::connect(server.addr, PASS, ip("127.0.0.2")).await,
        Err(ConnError::Throttled { .. })
    ));

    // Other addresses are not locked out: a member from 127.0.0.3 gets in at once, and a wrong
    // guess from 127.0.0.4 is still just a wrong guess.
    let started = Instant::now();
    let mut member = RawMember::connect(server.addr, PASS, ip("127.0.0.3"))
        .await
        .expect("another address is not locked out");
    member.join("cleo").await;
    assert!(matches!(
        member.next_private().await,
        Some(ServerMessage::Welcome { .. })
    ));
    println!(
        "member from another address in the room after {:?}",
        started.elapsed()
    );
    assert!(matches!(
        RawMember::connect(server.addr, "another guess", ip("127.0.0.4")).await,
        Err(ConnError::Rejected(Some(RejectCode::AuthenticationFailed)))
    ));
    server.wait_for_log("too many from this address").await;

    // Guesses from 127.0.0.1 lock out the address tertulia-chat connects from (a shared one):
    // the real client gets the message with the time, in both languages, and gets in after it.
    let (retry_after, _) = guess_until_refused(&server, "127.0.0.1").await;
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(binary("tertulia-chat"))
            .arg(server.addr.to_string())
            .args(["--nick", "dora", "--lang", "es", "--give-up-after", "1"])
            .env("TERTULIA_PASSPHRASE", PASS)
            .stdin(Stdio::piped())
            .output(),
    )
    .await
    .expect("tertulia-chat did not exit")
    .expect("run tertulia-chat");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("demasiados intentos fallidos desde tu red; reintenta en"),
        "{shown}"
    );
    assert_eq!(output.status.code(), Some(5), "gave up as asked: {shown}");

    let started = Instant::now();
    let mut dora = ChatProcess::start(server.addr, "dora", PASS, &[]).await;
    let refused = dora.wait_type("error").await;
    assert_eq!(refused["kind"], "too_many_failed_attempts", "{refused}");
    let secs = refused["retry_after_secs"].as_u64().expect("a retry time");
    assert!(secs >= 1 && secs <= u64::from(retry_after), "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("retry in {secs} s"))),
        "{refused}"
    );
    dora.wait_type("connected").await;
    println!(
        "the real client behind the throttled address got in after {:?} (told {secs} s)",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(secs.saturating_sub(1)),
        "it waited as told"
    );
}

/// A guess whose answer would come after the handshake timeout (message 1 sent late, the
/// `Reject(1)` held back) is counted all the same: the server counts it when message 1 fails,
/// not when it answers, so a guesser cannot make delayed answers free by letting the timeout
/// cut them (a right guess is answered at once, so the cut itself would tell).
#[tokio::test]
async fn guesses_cut_by_the_timeout_before_their_delayed_answer_still_count() {
    use tertulia_core::frame::{self, FrameKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--handshake-timeout-secs",
            "1",
            "--max-failed-handshakes",
            "6",
        ],
    )
    .await;
    let mut answered = 0;
    for _ in 0..6 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.5:0".parse().expect("address"))
            .expect("bind");
        let mut stream = socket.connect(server.addr).await.expect("connect");
        let mut hello = [0u8; 26];
        stream.read_exact(&mut hello).await.expect("hello");
        // Message 1 at 0.6 s: from the 5th failure on, the held-back Reject(1) (0.5 s) would
        // come after the 1 s timeout.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let guess: Vec<u8> = (0..48).map(|_| rand::random::<u8>()).collect();
        stream
            .write_all(&frame::encode(FrameKind::HandshakeInit, &guess))
            .await
            .expect("message 1");
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut reply)).await;
        if reply.first() == Some(&(FrameKind::Reject as u8)) {
            answered += 1;
        }
    }
    println!("{answered} of 6 late guesses answered before the timeout");
    assert!(
        answered < 6,
        "some answers must have been cut by the timeout"
    );
    assert!(matches!(
        RawMember::connect(server.addr, PASS, ip("127.0.0.5")).await,
        Err(ConnError::Throttled { .. })
    ));
}

#[tokio::test]
async fn a_connection_that_handshakes_and_never_joins_is_closed_within_the_handshake_timeout() {
    let server =
        ServerProcess::start("127.0.0.1:0", PASS, &["--handshake-timeout-secs", "2"]).await;
    let mut idle = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("handshake");
    let started = Instant::now();
    let last = idle.until_closed().await;
    let closed_after = started.elapsed();
    println!("closed {closed_after:?} after the handshake without a join");
    assert!(
        matches!(
            last,
            Some(ServerMessage::Error {
                code: tertulia_core::message::ErrorCode::Timeout,
                ..
            })
        ),
        "{last:?}"
    );
    assert!(closed_after < Duration::from_secs(10), "{closed_after:?}");
}

/// Connections opened before the lockout do not keep guessing after it: the lockout is checked
/// again when message 1 arrives, so a guesser that opens many connections at once (up to the
/// per-address limit) and then guesses on each gets only `--max-failed-handshakes` answers;
/// the rest are refused with `Reject(6)` without being evaluated.
#[tokio::test]
async fn connections_opened_before_the_lockout_do_not_guess_past_it() {
    use tertulia_core::frame::{self, FrameKind};
    use tertulia_core::hello::parse_reject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LIMIT: usize = 3;
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-failed-handshakes", &LIMIT.to_string()],
    )
    .await;
    // All admitted first: the source has no failure yet.
    let mut streams = Vec::new();
    for _ in 0..LIMIT + 4 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.6:0".parse().expect("address"))
            .expect("bind");
        let mut stream = socket.connect(server.addr).await.expect("connect");
        let mut hello = [0u8; 26];
        stream.read_exact(&mut hello).await.expect("hello");
        streams.push(stream);
    }
    let mut codes = Vec::new();
    for mut stream in streams {
        let guess: Vec<u8> = (0..48).map(|_| rand::random::<u8>()).collect();
        stream
            .write_all(&frame::encode(FrameKind::HandshakeInit, &guess))
            .await
            .expect("message 1");
        let mut reply = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut reply))
            .await
            .expect("an answer before the handshake timeout")
            .expect("read");
        assert_eq!(reply.first(), Some(&(FrameKind::Reject as u8)), "{reply:?}");
        codes.push(
            parse_reject(&reply[frame::HEADER_LEN..])
                .code
                .expect("a known code"),
        );
    }
    let guessed = codes
        .iter()
        .filter(|c| **c == RejectCode::AuthenticationFailed)
        .count();
    assert_eq!(guessed, LIMIT, "guesses evaluated: {codes:?}");
    assert!(
        codes[LIMIT..]
            .iter()
            .all(|c| *c == RejectCode::TooManyFailedAttempts),
        "{codes:?}"
    );
}

/// Connections anyone can make as fast as they connect — refused at the per-address limit,
/// or failing the handshake with garbage — are logged at a bounded rate (a burst, then one a
/// second), each line counting what was left out, so a peer cannot grow the host's log
/// without bound.
#[tokio::test]
async fn refused_and_garbage_connections_are_logged_at_a_bounded_rate() {
    use tertulia_core::frame::{self, FrameKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        ServerProcess::start("127.0.0.1:0", PASS, &["--max-connections-per-ip", "1"]).await;
    let connect = |from: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(from.parse().expect("address")).expect("bind");
        socket.connect(server.addr).await.expect("connect")
    };
    let started = Instant::now();
    // One connection holds the address's only slot; the next ones are refused.
    let mut held = connect("127.0.0.7:0").await;
    let mut hello = [0u8; 26];
    held.read_exact(&mut hello).await.expect("hello");
    for _ in 0..150 {
        let mut refused = connect("127.0.0.7:0").await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(WAIT, refused.read_to_end(&mut reply)).await;
        assert_eq!(reply.first(), Some(&(FrameKind::Reject as u8)));
    }
    // Garbage instead of message 1 from other addresses.
    for i in 0..50 {
        let mut garbage = connect(if i % 2 == 0 {
            "127.0.0.8:0"
        } else {
            "127.0.0.9:0"
        })
        .await;
        garbage.read_exact(&mut hello).await.expect("hello");
        let _ = garbage
            .write_all(&frame::encode(FrameKind::HandshakeResponse, &[0; 48]))
            .await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(WAIT, garbage.read_to_end(&mut reply)).await;
    }
    let elapsed = started.elapsed();
    let noisy = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("limit reached; refusing")
                    || (l.contains("handshake failed") && !l.contains("wrong passphrase"))
            })
            .count()
    };
    let lines = noisy(&server.log());
    println!("200 noisy connections in {elapsed:?} logged in {lines} lines");
    assert!(lines >= 1, "they are still logged");
    assert!(
        lines as u64 <= 5 + elapsed.as_secs() + 1,
        "{lines} lines in {elapsed:?}"
    );
    // A line after a quiet second says how many were left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    drop(connect("127.0.0.7:0").await);
    let left_out = |log: &str| {
        log.lines().any(|l| {
            l.split("suppressed=")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
    };
    let deadline = Instant::now() + WAIT;
    while !left_out(&server.log()) {
        assert!(Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
