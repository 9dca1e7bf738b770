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
use tertulia_e2e::{ChatProcess, RawMember, ServerProcess, WAIT};

const PASS: &str = "online guessing passphrase";
const LOCKOUT_SECS: u16 = 6;
const MAX_FAILURES: usize = 5;

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("an IP address"))
}

/// A member with the right passphrase from `source` gets in: handshake, join, welcome.
async fn joins_from(server: &ServerProcess, source: &str, nick: &str) {
    let mut member = RawMember::connect(server.addr, PASS, ip(source))
        .await
        .expect("another address is not locked out or held up");
    member.join(nick).await;
    assert!(matches!(
        member.next_private().await,
        Some(ServerMessage::Welcome { .. })
    ));
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
    joins_from(&server, "127.0.0.3", "cleo").await;
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
    let (mut command, _data_home) = tertulia_e2e::chat_command();
    let output = tokio::time::timeout(
        WAIT,
        command
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

/// What a guesser's connection got for its init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A handshake response: the guesser can check its guess against it.
    Response,
    /// A `Reject` frame with this code.
    Reject(Option<RejectCode>),
    /// Closed without a word.
    Closed,
    /// Nothing yet.
    Silent,
}

/// Open `n` connections from `source`, each reading its Hello (all admitted while the source
/// has no failure), then send a guess's init on every one of them before reading anything.
async fn send_parallel_guesses(
    server: &ServerProcess,
    source: &str,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    use tertulia_core::frame::{self, FrameKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut streams = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{source}:0").parse().expect("address"))
            .expect("bind");
        let mut stream = socket.connect(server.addr).await.expect("connect");
        let mut hello = [0u8; 5 + tertulia_core::hello::HELLO_LEN];
        stream.read_exact(&mut hello).await.expect("hello");
        streams.push((stream, hello));
    }
    let mut sent = Vec::new();
    for (i, (mut stream, hello)) in streams.into_iter().enumerate() {
        let (_, init) =
            tertulia_core::handshake::client_start(&[i as u8; 32], &hello[5..]).expect("init");
        stream
            .write_all(&frame::encode(FrameKind::HandshakeInit, &init))
            .await
            .expect("init");
        sent.push(stream);
    }
    sent
}

/// The answer waiting on `stream`, if one comes within `within` (the stream stays open).
async fn answer_of(stream: &mut tokio::net::TcpStream, within: Duration) -> Answer {
    use tertulia_core::frame::{self, FrameKind};
    use tertulia_core::hello::parse_reject;
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; frame::HEADER_LEN];
    match tokio::time::timeout(within, stream.read_exact(&mut header)).await {
        Err(_) => return Answer::Silent,
        Ok(Err(_)) => return Answer::Closed,
        Ok(Ok(_)) => {}
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.expect("body");
    match header[0] {
        k if k == FrameKind::HandshakeResponse as u8 => Answer::Response,
        k if k == FrameKind::Reject as u8 => Answer::Reject(parse_reject(&body).code),
        other => panic!("unexpected frame kind {other} in answer to an init"),
    }
}

/// The answers on every stream within `within` of now, read at once (each stream stays open).
async fn answers_within(
    streams: Vec<tokio::net::TcpStream>,
    within: Duration,
) -> (Vec<tokio::net::TcpStream>, Vec<Answer>) {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let answer = answer_of(&mut stream, within).await;
                (stream, answer)
            })
        })
        .collect();
    let mut streams = Vec::new();
    let mut answers = Vec::new();
    for task in tasks {
        let (stream, answer) = task.await.expect("reader task");
        streams.push(stream);
        answers.push(answer);
    }
    (streams, answers)
}

/// Guesses sent in parallel do not go past the limit. Version 2 only learns that a guess
/// failed when its connection ends without a first session frame that opens; a guesser that
/// opens as many connections as the address may (16), sends every init before closing any,
/// then reads every answer would get 16 answers to check its guesses against if failures
/// were counted only at the end. The server counts each answered, unconfirmed handshake as a
/// failure from the moment it answers, so it answers at most `--max-failed-handshakes` of
/// them (as version 1 did) and refuses the rest with `Reject(6)`, their inits unevaluated —
/// while a member with the passphrase from another address gets in at once.
#[tokio::test]
async fn connections_opened_before_the_lockout_do_not_guess_past_it() {
    const LIMIT: usize = 1;
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--max-failed-handshakes",
            &LIMIT.to_string(),
            "--handshake-timeout-secs",
            "3",
        ],
    )
    .await;
    let streams = send_parallel_guesses(&server, "127.0.0.11", 16).await;
    // Every answer, in order (a connection the server keeps waiting is closed at the
    // handshake timeout), before closing any connection.
    let mut answers = Vec::new();
    let mut open = Vec::new();
    for mut stream in streams {
        answers.push(answer_of(&mut stream, WAIT).await);
        open.push(stream);
    }
    let guessed = answers.iter().filter(|a| **a == Answer::Response).count();
    println!("{guessed} of 16 parallel guesses answered: {answers:?}");
    assert!(guessed <= LIMIT, "guesses answered: {answers:?}");
    assert!(
        answers.iter().all(|a| matches!(
            a,
            Answer::Response
                | Answer::Closed
                | Answer::Reject(Some(RejectCode::TooManyFailedAttempts))
        )),
        "{answers:?}"
    );
    // Another address is not affected, while the guesses are still unconfirmed.
    joins_from(&server, "127.0.0.12", "cleo").await;
    drop(open);
    // The hung-up guess counted: the address is locked out, the right passphrase too.
    server.wait_for_log("too many from this address").await;
    assert!(matches!(
        RawMember::connect(server.addr, PASS, ip("127.0.0.11")).await,
        Err(ConnError::Throttled { .. })
    ));
}

/// At most two handshakes from one address are answered and unconfirmed at once: a further
/// init waits for its answer until one of the two is settled (here: the guesser hangs up),
/// so parallel connections buy a guesser no more than two guesses at a time, below the limit
/// too. A member from another address is not held up.
#[tokio::test]
async fn at_most_two_unconfirmed_handshakes_per_address_at_once() {
    let server =
        ServerProcess::start("127.0.0.1:0", PASS, &["--handshake-timeout-secs", "6"]).await;
    let streams = send_parallel_guesses(&server, "127.0.0.13", 16).await;
    let (streams, answers) = answers_within(streams, Duration::from_secs(1)).await;
    println!("within 1 s: {answers:?}");
    let answered: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i] == Answer::Response)
        .collect();
    assert_eq!(answered.len(), 2, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Answer::Response | Answer::Silent)),
        "{answers:?}"
    );
    let started = Instant::now();
    joins_from(&server, "127.0.0.14", "dora").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The guesser hangs up the two answered guesses: the next two waiting are answered.
    let waiting: Vec<_> = streams
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !answered.contains(i))
        .map(|(_, stream)| stream)
        .collect();
    let (_waiting, answers) = answers_within(waiting, Duration::from_secs(2)).await;
    println!("after hanging up those two, within 2 s: {answers:?}");
    assert_eq!(
        answers.iter().filter(|a| **a == Answer::Response).count(),
        2,
        "{answers:?}"
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
