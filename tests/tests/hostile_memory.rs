//! Nothing a peer sends grows the server's memory past fixed caps (issue #12): members that
//! open their allowed connections, never read, and keep sending cheap requests that produce
//! large replies — before joining, after joining, paging history, resuming from the start of
//! a large history. Each attack runs against the real `tertulia-server` while two ordinary
//! members (`tertulia-chat`) keep chatting; the server's resident memory must stay under its
//! idle size plus [`RSS_BOUND`](tertulia_e2e::hostile::RSS_BOUND). A last test measures chat
//! latency while a member pages history as fast as it can (printed, not asserted).

use std::time::{Duration, Instant};

use tertulia_core::message::{ClientMessage, Resume, ServerMessage};
use tertulia_e2e::hostile::{
    client_id, idle_rss, loopback, never_reading, still_chatting, two_members, PeakRss,
};
use tertulia_e2e::{DataDir, RawMember, ServerProcess};

const PASS: &str = "hostile memory passphrase";

/// Fill a stored room with `count` messages of `bytes` bytes each (flood control off), stop
/// the server and return the room's epoch. The room is then served again by the caller.
async fn stored_room(dir: &DataDir, count: u64, bytes: usize) -> String {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--data-dir", dir.path(), "--flood-rate", "0"],
    )
    .await;
    let mut filler = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    filler.join("filler").await;
    let Some(ServerMessage::Welcome { epoch, .. }) = filler.next_private().await else {
        panic!("no welcome");
    };
    let text = "h".repeat(bytes);
    for batch in (1..=count).collect::<Vec<_>>().chunks(50) {
        for &id in batch {
            filler
                .send(&ClientMessage::Say {
                    id,
                    text: format!("{id} {text}"),
                })
                .await
                .expect("say");
        }
        let last = *batch.last().expect("batch");
        while let Some(message) = filler.next_private().await {
            if matches!(message, ServerMessage::Ack { up_to } if up_to == last) {
                break;
            }
        }
    }
    server.terminate().await;
    epoch
}

/// Before joining: connections that never read send `join`s with a 60 KiB nickname, each
/// refused. Today's server echoes the whole nickname in every `nick_rejected` and queues up
/// to 8192 of them per connection; now the echo is cut to 64 bytes, join retries are
/// rate-limited and the connection is closed for flooding.
#[tokio::test]
async fn rejected_joins_with_huge_nicknames_from_members_that_never_read() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (mut ana, mut ben) = two_members(&server, PASS).await;
    let idle = idle_rss(&server).await;
    let watch = PeakRss::watch(&server);

    let mut attackers = Vec::new();
    for i in 0..8 {
        let mut raw = RawMember::connect(server.addr, PASS, loopback(10 + i % 2))
            .await
            .expect("connect");
        attackers.push(tokio::spawn(async move {
            let nick = "n".repeat(60_000);
            let mut sent = 0;
            for _ in 0..300 {
                let join = ClientMessage::Join {
                    nick: nick.clone(),
                    client_id: client_id(i as usize),
                    resume: None,
                };
                if raw.send(&join).await.is_err() {
                    break;
                }
                sent += 1;
            }
            (raw, sent)
        }));
    }
    still_chatting(&mut ana, &mut ben, "during the join flood").await;
    let mut sent = Vec::new();
    let mut members = Vec::new();
    for attacker in attackers {
        let (raw, count) = attacker.await.expect("attacker");
        sent.push(count);
        members.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("joins sent per connection before it was closed: {sent:?}");
    watch.assert_bounded("rejected-join flood", idle);
    still_chatting(&mut ana, &mut ben, "after the join flood").await;
    // What the server did send back is short: the first reply echoes at most 64 bytes.
    let mut first = members.swap_remove(0);
    if let Some(ServerMessage::NickRejected { nick, .. }) = first.next_private().await {
        assert!(nick.len() <= 64, "echoed {} bytes", nick.len());
    }
}

/// After joining: connections that never read ask for pages of a large stored history (and
/// ping) at the pace today's flood limit allows, 5 a second each. Today every page (~64 KiB)
/// waits in an item-bounded queue; now they count in bytes against the connection's cap,
/// `older` has its own far lower rate, and a stalled reader is cut off.
#[tokio::test]
async fn pings_and_older_pages_from_members_that_never_read() {
    let dir = DataDir::new("hostile-older");
    stored_room(&dir, 600, 8000).await;
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", dir.path()]).await;
    let (mut ana, mut ben) = two_members(&server, PASS).await;
    let idle = idle_rss(&server).await;
    let watch = PeakRss::watch(&server);

    let mut attackers = Vec::new();
    for i in 0..48usize {
        let mut raw = never_reading(
            server.addr,
            PASS,
            &format!("pager{i}"),
            loopback(20 + (i % 3) as u8),
        )
        .await;
        attackers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let start = Instant::now();
            let mut sent = 0;
            while start.elapsed() < Duration::from_secs(12) {
                tick.tick().await;
                let older = ClientMessage::Older {
                    before_seq: u64::MAX,
                    limit: 200,
                };
                if raw.send(&older).await.is_err() || raw.send(&ClientMessage::Ping).await.is_err()
                {
                    break;
                }
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    still_chatting(&mut ana, &mut ben, "during the paging storm").await;
    let mut sent = Vec::new();
    for attacker in attackers {
        sent.push(attacker.await.expect("attacker"));
    }
    println!("older requests sent per connection: {sent:?}");
    watch.assert_bounded("older/ping storm", idle);
    still_chatting(&mut ana, &mut ben, "after the paging storm").await;
}

/// Many connections resume from sequence 0 against a large history (2000 events of 8 KB)
/// and never read. Today each gets its own copy of the whole history in one `history`
/// message; now the writer reads the replay from the shared history a batch at a time.
#[tokio::test]
async fn resume_storm_from_the_start_of_a_large_history() {
    let dir = DataDir::new("hostile-resume");
    let epoch = stored_room(&dir, 2000, 8000).await;
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", dir.path()]).await;
    let (mut ana, mut ben) = two_members(&server, PASS).await;
    let idle = idle_rss(&server).await;
    let watch = PeakRss::watch(&server);

    let mut resumers = Vec::new();
    for i in 0..24usize {
        let mut raw = RawMember::connect(server.addr, PASS, loopback(30 + (i % 2) as u8))
            .await
            .expect("connect");
        raw.send(&ClientMessage::Join {
            nick: format!("resumer{i}"),
            client_id: client_id(i),
            resume: Some(Resume {
                epoch: epoch.clone(),
                last_seq: 0,
            }),
        })
        .await
        .expect("join");
        resumers.push(raw);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    still_chatting(&mut ana, &mut ben, "during the resume storm").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    watch.assert_bounded("resume storm", idle);

    // A resumer that does read gets the whole history up to its welcome's head, once and in
    // order, in pieces.
    let mut reader = resumers.pop().expect("a resumer");
    let Some(ServerMessage::Welcome { head_seq, .. }) = reader.next_private().await else {
        panic!("no welcome");
    };
    assert!(
        head_seq > 2000,
        "the stored messages and the joins since: {head_seq}"
    );
    let mut seqs = Vec::new();
    let mut pieces = 0;
    while seqs.last() < Some(&head_seq) {
        match reader.next_private().await {
            Some(ServerMessage::History { events }) => {
                pieces += 1;
                seqs.extend(events.into_iter().map(|e| e.seq));
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(
        seqs,
        (1..=head_seq).collect::<Vec<u64>>(),
        "all of it, once, in order"
    );
    assert!(pieces > 100, "in bounded pieces: {pieces}");
    still_chatting(&mut ana, &mut ben, "after the resume storm").await;
}

/// Chat latency between two members while a third pages a large stored history back to back
/// as fast as the server answers (flood control off, so nothing holds it back). Paging reads
/// the database off the room's lock, so chat is not stalled. Prints p50/p99/max.
#[tokio::test]
async fn chat_latency_while_a_member_pages_history_as_fast_as_it_can() {
    let dir = DataDir::new("hostile-latency");
    stored_room(&dir, 3000, 2000).await;
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--data-dir", dir.path(), "--flood-rate", "0"],
    )
    .await;
    let (mut ana, mut ben) = two_members(&server, PASS).await;

    let mut pager = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    pager.join("pager").await;
    let paging = tokio::spawn(async move {
        let mut pages = 0u64;
        let mut before = u64::MAX;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(8) {
            let older = ClientMessage::Older {
                before_seq: before,
                limit: 200,
            };
            if pager.send(&older).await.is_err() {
                break;
            }
            loop {
                match pager.next_private().await {
                    Some(ServerMessage::Older { events, more, .. }) => {
                        pages += 1;
                        // Page back, and round again from the top at the start.
                        before = match events.first() {
                            Some(first) if more => first.seq,
                            _ => u64::MAX,
                        };
                        break;
                    }
                    Some(_) => {}
                    None => return pages,
                }
            }
        }
        pages
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    for i in 0..120 {
        let text = format!("latency probe {i}");
        let sent = Instant::now();
        still_chatting(&mut ana, &mut ben, &text).await;
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let pages = paging.await.expect("pager");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "chat latency while one member paged {pages} pages back to back: p50 {:?}, p99 {:?}, max {:?} ({} probes)",
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(pages > 10, "the pager was served: {pages} pages");
}
