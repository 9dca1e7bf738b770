//! Rotating room keys and bound streams, through the real `tertulia-server` (and the real
//! `tertulia-chat`), attacked as an attacker would: a member records every broadcast frame
//! it receives, as anyone on the path could; a newcomer's key (handed out after a rotation)
//! must open none recorded before it, a leaver's last key none recorded after its leave; and
//! a proxy that drops every broadcast frame, passing everything else, is detected by the
//! client within the keep-alive interval.

use std::time::{Duration, Instant};

use tertulia_core::cipher::Key;
use tertulia_core::frame::FrameKind;
use tertulia_core::message::{
    BroadcastMessage, ClientMessage, LeaveReason, RoomEvent, RoomEventKind, ServerMessage,
};
use tertulia_core::sealed::BroadcastOpener;
use tertulia_e2e::{ChatProcess, Proxy, RawMember, ServerProcess};

const PASS: &str = "rotating keys passphrase";

/// The counter a broadcast frame body carries.
fn counter(body: &[u8]) -> u64 {
    u64::from_be_bytes(body[..8].try_into().expect("counter"))
}

/// Does `key` open the recorded broadcast `body`?
fn opens(key: &Key, body: &[u8]) -> bool {
    BroadcastOpener::new(key, counter(body))
        .open::<BroadcastMessage>(body)
        .is_ok()
}

/// A member that records every broadcast frame it receives and opens each with the key for
/// its counter, as the protocol says (the welcome's key, then each `room_key` from its
/// `from_broadcast` on): any frame that does not open fails the test.
struct Recorder {
    raw: RawMember,
    /// Keys received, with the first counter each is for.
    keys: Vec<(Key, u64)>,
    next: u64,
    frames: Vec<Vec<u8>>,
    events: Vec<RoomEvent>,
}

impl Recorder {
    async fn join(addr: std::net::SocketAddr, nick: &str) -> Self {
        let mut raw = RawMember::connect(addr, PASS, None).await.expect("connect");
        raw.join(nick).await;
        loop {
            match raw.next_private().await.expect("a welcome") {
                ServerMessage::Welcome {
                    room_key,
                    next_broadcast,
                    ..
                } => {
                    return Self {
                        raw,
                        keys: vec![(room_key, next_broadcast)],
                        next: next_broadcast,
                        frames: Vec::new(),
                        events: Vec::new(),
                    }
                }
                ServerMessage::MoreOnline { .. } => {}
                other => panic!("{nick}: expected a welcome, got {other:?}"),
            }
        }
    }

    /// The key it holds last.
    fn last_key(&self) -> Key {
        self.keys.last().expect("a key").0
    }

    /// Read on until `done` holds for the events opened so far.
    async fn until(&mut self, what: &str, done: impl Fn(&[RoomEvent]) -> bool) {
        while !done(&self.events) {
            let (kind, body) = self
                .raw
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {what}"));
            match kind {
                FrameKind::Session => match self.raw.open_session(&body) {
                    ServerMessage::RoomKey {
                        room_key,
                        from_broadcast,
                    } => {
                        assert_eq!(
                            from_broadcast, self.next,
                            "a room key right before its first broadcast"
                        );
                        self.keys.push((room_key, from_broadcast));
                    }
                    ServerMessage::Pong { broadcast_next } => {
                        assert_eq!(broadcast_next, self.next)
                    }
                    ServerMessage::History { events } => self.events.extend(events),
                    _ => {}
                },
                FrameKind::Broadcast => {
                    let c = counter(&body);
                    assert_eq!(c, self.next, "broadcasts in order, none missing");
                    let key = self.last_key();
                    let message: BroadcastMessage = BroadcastOpener::new(&key, c)
                        .open(&body)
                        .unwrap_or_else(|e| panic!("broadcast {c} does not open: {e}"));
                    if let BroadcastMessage::Event(event) = message {
                        self.events.push(event);
                    }
                    self.frames.push(body);
                    self.next += 1;
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Where each key starts, after the first.
    fn rotations(&self) -> Vec<u64> {
        self.keys[1..].iter().map(|(_, from)| *from).collect()
    }
}

fn said(events: &[RoomEvent], text: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(&e.kind, RoomEventKind::Message { text: t, .. } if t == text))
}

fn left(events: &[RoomEvent], nick: &str, why: LeaveReason) -> Option<u64> {
    events.iter().find_map(|e| match &e.kind {
        RoomEventKind::Leave { nick: n, reason } if n == nick && *reason == why => Some(e.seq),
        _ => None,
    })
}

fn joined(events: &[RoomEvent], nick: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(&e.kind, RoomEventKind::Join { nick: n } if n == nick))
}

fn errors(chat: &ChatProcess) -> Vec<String> {
    chat.seen
        .iter()
        .filter(|e| e["type"] == "error")
        .map(|e| e.to_string())
        .collect()
}

/// The counter of the broadcast frame that carried the event with `seq`.
fn counter_of_event(rec: &Recorder, seq: u64) -> u64 {
    rec.frames
        .iter()
        .find(|body| {
            let message: BroadcastMessage = BroadcastOpener::new(
                &rec.keys
                    .iter()
                    .rev()
                    .find(|(_, from)| *from <= counter(body))
                    .expect("a key")
                    .0,
                counter(body),
            )
            .open(body)
            .expect("opens");
            matches!(message, BroadcastMessage::Event(e) if e.seq == seq)
        })
        .map(|body| counter(body))
        .expect("recorded")
}

/// A member quits, another's connection is lost for good: each time the key rotates before
/// the leave notice. A newcomer's key opens nothing recorded before the rotation it came
/// from, and what follows it; neither leaver's last key opens anything recorded after its
/// leave; two real clients chat through both rotations with nothing lost or duplicated.
#[tokio::test]
async fn a_leave_rotates_the_key_so_newcomers_and_leavers_read_only_their_share() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--rekey-secs", "3600", "--grace-secs", "1"],
    )
    .await;
    let mut rec = Recorder::join(server.addr, "rec").await;
    let mut ben = Recorder::join(server.addr, "ben").await;
    let mut dee = Recorder::join(server.addr, "dee").await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let mut cid = ChatProcess::start(server.addr, "cid", PASS, &[]).await;
    cid.wait_type("connected").await;

    ana.say("a1").await;
    cid.say("c1").await;
    rec.until("a1 and c1", |e| said(e, "a1") && said(e, "c1"))
        .await;
    ben.until("a1 and c1", |e| said(e, "a1") && said(e, "c1"))
        .await;
    assert!(rec.rotations().is_empty(), "no rotation yet");

    // Ben quits.
    let ben_key = ben.last_key();
    ben.raw.send(&ClientMessage::Leave).await.expect("leave");
    rec.until("ben's leave", |e| {
        left(e, "ben", LeaveReason::Quit).is_some()
    })
    .await;
    let ben_left = counter_of_event(&rec, left(&rec.events, "ben", LeaveReason::Quit).unwrap());
    assert_eq!(
        rec.rotations(),
        [ben_left],
        "rotated right before ben's leave notice"
    );

    ana.say("a2").await;
    cid.say("c2").await;
    rec.until("a2 and c2", |e| said(e, "a2") && said(e, "c2"))
        .await;
    dee.until("a2 and c2", |e| said(e, "a2") && said(e, "c2"))
        .await;

    // Dee's connection is lost and not back within the grace period (1 s).
    let dee_key = dee.last_key();
    drop(dee);
    rec.until("dee's leave", |e| {
        left(e, "dee", LeaveReason::ConnectionLost).is_some()
    })
    .await;
    let dee_left = counter_of_event(
        &rec,
        left(&rec.events, "dee", LeaveReason::ConnectionLost).unwrap(),
    );
    assert_eq!(rec.rotations(), [ben_left, dee_left]);

    ana.say("a3").await;
    cid.say("c3").await;
    rec.until("a3 and c3", |e| said(e, "a3") && said(e, "c3"))
        .await;

    // A newcomer gets the key current now: the one from dee's leave on.
    let neo = Recorder::join(server.addr, "neo").await;
    rec.until("neo's join", |e| joined(e, "neo")).await;
    let neo_key = neo.last_key();
    assert_eq!(neo_key, rec.last_key());
    assert_eq!(neo_key, rec.keys[2].0);

    assert!(
        rec.frames.len() > 10,
        "{} frames recorded",
        rec.frames.len()
    );
    for body in &rec.frames {
        let c = counter(body);
        assert_eq!(
            opens(&neo_key, body),
            c >= dee_left,
            "newcomer's key, broadcast {c}"
        );
        assert_eq!(
            opens(&ben_key, body),
            c < ben_left,
            "ben's last key, broadcast {c}"
        );
        assert_eq!(
            opens(&dee_key, body),
            (ben_left..dee_left).contains(&c),
            "dee's last key, broadcast {c}"
        );
    }

    // The real clients chatted through both rotations: each message once, no error.
    assert_eq!(cid.wait_messages_from("ana", 3).await, ["a1", "a2", "a3"]);
    assert_eq!(ana.wait_messages_from("cid", 3).await, ["c1", "c2", "c3"]);
    ana.drain_for(Duration::from_millis(300)).await;
    cid.drain_for(Duration::from_millis(300)).await;
    assert_eq!(cid.messages_from("ana"), ["a1", "a2", "a3"], "exactly once");
    assert_eq!(ana.messages_from("cid"), ["c1", "c2", "c3"], "exactly once");
    assert!(errors(&ana).is_empty(), "{:?}", errors(&ana));
    assert!(errors(&cid).is_empty(), "{:?}", errors(&cid));
}

/// With `--rekey-secs 1` a room that is chatting gets a fresh key every second or so: a
/// newcomer's key opens nothing recorded before its rotation and exactly the broadcasts
/// under it; a real client chatting all the while loses and repeats nothing.
#[tokio::test]
async fn the_key_rotates_periodically_while_the_room_is_in_use() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--rekey-secs", "1"]).await;
    let mut rec = Recorder::join(server.addr, "rec").await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let mut cid = ChatProcess::start(server.addr, "cid", PASS, &[]).await;
    cid.wait_type("connected").await;

    let mut texts = Vec::new();
    let started = Instant::now();
    while rec.rotations().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no rotations: {:?}",
            rec.rotations()
        );
        let text = format!("m{}", texts.len() + 1);
        ana.say(&text).await;
        rec.until(&text, |e| said(e, &text)).await;
        texts.push(text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let neo = Recorder::join(server.addr, "neo").await;
    rec.until("neo's join", |e| joined(e, "neo")).await;
    for _ in 0..3 {
        let text = format!("m{}", texts.len() + 1);
        ana.say(&text).await;
        rec.until(&text, |e| said(e, &text)).await;
        texts.push(text);
    }
    let neo_key = neo.last_key();
    let at = rec
        .keys
        .iter()
        .position(|(key, _)| *key == neo_key)
        .expect("the newcomer's key is one the room used");
    assert!(at >= 2, "handed out after two rotations");
    let from = rec.keys[at].1;
    let until = rec.keys.get(at + 1).map_or(u64::MAX, |(_, from)| *from);
    for body in &rec.frames {
        let c = counter(body);
        assert_eq!(
            opens(&neo_key, body),
            (from..until).contains(&c),
            "broadcast {c}"
        );
    }
    assert!(
        rec.frames.iter().any(|b| counter(b) < from),
        "something recorded before"
    );

    assert_eq!(cid.wait_messages_from("ana", texts.len()).await, texts);
    assert_eq!(ana.wait_messages_from("ana", texts.len()).await, texts);
    cid.drain_for(Duration::from_millis(300)).await;
    assert_eq!(cid.messages_from("ana"), texts, "exactly once");
    assert!(errors(&ana).is_empty(), "{:?}", errors(&ana));
    assert!(errors(&cid).is_empty(), "{:?}", errors(&cid));
}

/// A proxy between the real `tertulia-chat` and the server drops every broadcast frame and
/// passes everything else (pings, pongs, acks still flow: the connection looks healthy). The
/// client notices at its next pong — within the 15 s keep-alive interval — reports an
/// integrity error, reconnects and resumes: every message arrives once.
#[tokio::test]
async fn a_proxy_that_drops_broadcasts_is_detected_within_the_keep_alive_interval() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut cid = ChatProcess::start(server.addr, "cid", PASS, &[]).await;
    cid.wait_type("connected").await;
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    cid.say("before").await;
    assert_eq!(ana.wait_messages_from("cid", 1).await, ["before"]);

    proxy.drop_broadcasts(true);
    let dropping_since = Instant::now();
    cid.say("while dropped").await;
    let error = ana
        .wait_for("an integrity error", |e| e["type"] == "error")
        .await;
    let detected_after = dropping_since.elapsed();
    proxy.drop_broadcasts(false);
    assert_eq!(error["kind"], "integrity", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("broadcasts are being dropped on the way")),
        "{error}"
    );
    assert!(
        detected_after <= Duration::from_secs(20),
        "detected after {detected_after:?}"
    );
    assert!(
        ana.messages_from("cid") == ["before"],
        "nothing got through meanwhile"
    );

    // It reconnects and resumes: the dropped message arrives (replayed), then live ones.
    ana.wait_count("connected", 2).await;
    cid.say("after").await;
    assert_eq!(
        ana.wait_messages_from("cid", 3).await,
        ["before", "while dropped", "after"]
    );
    ana.drain_for(Duration::from_millis(300)).await;
    assert_eq!(
        ana.messages_from("cid"),
        ["before", "while dropped", "after"],
        "exactly once"
    );
    assert!(proxy.connections() >= 2, "a fresh connection");
}
