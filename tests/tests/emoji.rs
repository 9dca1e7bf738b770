//! Every emoji people type reaches the room: all fully-qualified sequences of the Unicode
//! emoji test file (`/usr/share/unicode/emoji/emoji-test.txt`, Debian's `unicode-data`,
//! installed by `make test`) sent through the real `tertulia-server` and `tertulia-chat`,
//! between members whose nicknames carry emoji too, arrive exactly as typed.

use tertulia_e2e::{ChatProcess, ServerProcess};

const PASS: &str = "correct horse battery staple";
const EMOJI_TEST: &str = "/usr/share/unicode/emoji/emoji-test.txt";

fn fully_qualified_emoji() -> Vec<String> {
    let file = std::fs::read_to_string(EMOJI_TEST).unwrap_or_else(|e| {
        panic!("{EMOJI_TEST}: {e}; install Debian's unicode-data (make deps-test does)")
    });
    file.lines()
        .filter(|l| l.contains("; fully-qualified"))
        .map(|l| {
            l.split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(|hex| char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn every_fully_qualified_emoji_goes_through_the_room_as_typed() {
    let emoji = fully_qualified_emoji();
    assert!(emoji.len() > 3000, "only {} sequences", emoji.len());
    // Messages of 50 sequences each (a few KiB), the way a friend fills a line with emoji.
    let messages: Vec<String> = emoji.chunks(50).map(|c| c.join(" ")).collect();
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--flood-rate", "0"]).await;
    let mut ana = ChatProcess::start(server.addr, "ana ❤️", PASS, &[]).await;
    ana.wait_type("connected").await;
    let mut ben = ChatProcess::start(server.addr, "ben 🏳️‍🌈", PASS, &[]).await;
    ben.wait_type("connected").await;
    ana.wait_for("ben's join", |e| {
        e["type"] == "join" && e["nick"] == "ben 🏳️‍🌈"
    })
    .await;
    for message in &messages {
        ana.say(message).await;
    }
    assert_eq!(
        ben.wait_messages_from("ana ❤️", messages.len()).await,
        messages
    );
    // Nothing refused on the way, and every one acknowledged.
    ana.wait_for("the last ack", |e| {
        e["type"] == "acked"
            && e["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == messages.len()))
    })
    .await;
    assert!(
        !ana.seen.iter().any(|e| e["type"] == "message_rejected"),
        "refused: {:?}",
        ana.seen.iter().find(|e| e["type"] == "message_rejected")
    );
    // The same nickname without the emoji's selector is the same name: taken.
    let mut copycat = ChatProcess::start(server.addr, "ANA ❤", PASS, &[]).await;
    let refused = copycat.wait_type("nick_rejected").await;
    assert_eq!(refused["reason"], "taken");
}
