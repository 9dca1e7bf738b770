//! Online guessing and noisy peers, over the wire against the real server: failed handshakes
//! are throttled per source address (growing delay, then `Reject(6)` with a retry time) without
//! locking out other addresses; the real client behind a throttled address says so in both
//! languages, waits, and gets in; a connection that handshakes and never joins is closed
//! within the handshake timeout.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tertulia_core::conn::ConnError;
use tertulia_core::handshake::HandshakeError;
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
/// long each refused guess took to be answered. (Version 2: a wrong guess fails at the
/// guesser's own check of the handshake response; the guesser then hangs up, and the server
/// counts the unconfirmed handshake as a failure.)
async fn guess_until_refused(server: &ServerProcess, source: &str) -> (u16, Vec<Duration>) {
    let mut answered_in = Vec::new();
    for _ in 0..MAX_FAILURES + 5 {
        let started = Instant::now();
        match RawMember::connect(server.addr, "a wrong guess", ip(source)).await {
            Err(ConnError::Handshake(HandshakeError::AuthenticationFailed)) => {
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
        Err(ConnError::Handshake(HandshakeError::AuthenticationFailed))
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

/// A guess whose answer would come after the handshake timeout (the init sent late, the
/// response held back by the throttle) is counted all the same: the server counts every
/// answered-but-unconfirmed handshake, also one the timeout cuts, so a guesser cannot make
/// delayed answers free by letting the timeout cut them.
#[tokio::test]
async fn guesses_cut_by_the_timeout_before_their_delayed_answer_still_count() {
    use tertulia_core::frame::{self, FrameKind};
    use tertulia_core::handshake::client_start;
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
        let mut hello = [0u8; 5 + tertulia_core::hello::HELLO_LEN];
        stream.read_exact(&mut hello).await.expect("hello");
        // The init at 0.6 s: from the 5th failure on, the held-back response (0.5 s) would
        // come after the 1 s timeout.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (_, init) = client_start(&rand::random::<[u8; 32]>(), &hello[5..]).expect("init");
        stream
            .write_all(&frame::encode(FrameKind::HandshakeInit, &init))
            .await
            .expect("init");
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut reply)).await;
        if reply.first() == Some(&(FrameKind::HandshakeResponse as u8)) {
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

/// The key confirmation: a client that gets the response and then sends a first session
/// frame that does not open (it does not hold the key) is answered `Reject(1)` and counted.
#[tokio::test]
async fn a_first_session_frame_that_does_not_open_is_a_failed_guess() {
    use tertulia_core::frame::{self, FrameKind};
    use tertulia_core::handshake::client_start;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--max-failed-handshakes", "3"]).await;
    for attempt in 0..3 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.6:0".parse().expect("address"))
            .expect("bind");
        let mut stream = socket.connect(server.addr).await.expect("connect");
        let mut hello = [0u8; 5 + tertulia_core::hello::HELLO_LEN];
        stream.read_exact(&mut hello).await.expect("hello");
        let (_, init) = client_start(&[attempt; 32], &hello[5..]).expect("init");
        stream
            .write_all(&frame::encode(FrameKind::HandshakeInit, &init))
            .await
            .expect("init");
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).await.expect("response");
        assert_eq!(header[0], FrameKind::HandshakeResponse as u8);
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.expect("response body");
        // A "join" sealed with a key the server does not have.
        stream
            .write_all(&frame::encode(FrameKind::Session, &[0x55; 60]))
            .await
            .expect("frame");
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut reply)).await;
        assert_eq!(reply, [FrameKind::Reject as u8, 0, 0, 0, 1, 1], "Reject(1)");
    }
    assert!(matches!(
        RawMember::connect(server.addr, PASS, ip("127.0.0.6")).await,
        Err(ConnError::Throttled { .. })
    ));
    // Another address is not affected.
    assert!(RawMember::connect(server.addr, PASS, ip("127.0.0.7"))
        .await
        .is_ok());
}

/// Version 2: a connection that completes the handshake but never sends its first session
/// frame (the join, which confirms the key) is closed at the handshake timeout without a word
/// — and counted as a failed guess, since the server cannot tell it from one.
#[tokio::test]
async fn a_connection_that_handshakes_and_never_joins_is_closed_within_the_handshake_timeout() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--handshake-timeout-secs",
            "2",
            "--max-failed-handshakes",
            "1",
        ],
    )
    .await;
    let started = Instant::now();
    let mut idle = RawMember::connect(server.addr, PASS, ip("127.0.0.10"))
        .await
        .expect("handshake");
    let last = idle.until_closed().await;
    let closed_after = started.elapsed();
    println!("closed {closed_after:?} after the handshake without a join");
    assert_eq!(last, None, "nothing is sent before the key is confirmed");
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
    server
        .wait_for_log("handshake failed: wrong passphrase")
        .await;
    assert!(matches!(
        RawMember::connect(server.addr, PASS, ip("127.0.0.10")).await,
        Err(ConnError::Throttled { .. })
    ));
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
        let mut hello = [0u8; 5 + tertulia_core::hello::HELLO_LEN];
        stream.read_exact(&mut hello).await.expect("hello");
        streams.push(stream);
    }
    // Each guess is answered (a handshake response the guesser's check refuses; it hangs
    // up, which the server counts) until the lockout; the rest get `Reject(6)` unevaluated.
    let mut answers = Vec::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let (_, init) = tertulia_core::handshake::client_start(&[i as u8; 32], &hello_of(&server))
            .expect("init");
        stream
            .write_all(&frame::encode(FrameKind::HandshakeInit, &init))
            .await
            .expect("init");
        let mut header = [0u8; frame::HEADER_LEN];
        tokio::time::timeout(WAIT, stream.read_exact(&mut header))
            .await
            .expect("an answer before the handshake timeout")
            .expect("read");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.expect("body");
        if header[0] == FrameKind::HandshakeResponse as u8 {
            answers.push(None);
            drop(stream);
            // Let the server see the hang-up (and count it) before the next guess.
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            assert_eq!(header[0], FrameKind::Reject as u8);
            answers.push(parse_reject(&body).code);
        }
    }
    let guessed = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(guessed, LIMIT, "guesses evaluated: {answers:?}");
    assert!(
        answers[LIMIT..]
            .iter()
            .all(|c| *c == Some(RejectCode::TooManyFailedAttempts)),
        "{answers:?}"
    );
}

/// The Hello body a server sends (its salt is fixed for the server's life).
fn hello_of(server: &ServerProcess) -> Vec<u8> {
    let addr = server.addr;
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let mut hello = [0u8; 5 + tertulia_core::hello::HELLO_LEN];
        stream.read_exact(&mut hello).expect("hello");
        hello[5..].to_vec()
    })
    .join()
    .expect("hello thread")
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
    let mut hello = [0u8; 5 + tertulia_core::hello::HELLO_LEN];
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
