//! A room whose member list does not fit one frame: 560 members with long nicknames (about
//! 65 KiB of names). A newcomer still gets the whole online list (the welcome is split across
//! frames) and the room keeps working.

use tertulia_core::message::ServerMessage;
use tertulia_e2e::{ChatProcess, RawMember, ServerProcess};

const PASS: &str = "large room passphrase";
const MEMBERS: usize = 560;

#[tokio::test]
async fn a_newcomer_gets_an_online_list_longer_than_one_frame() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--max-connections",
            "1000",
            "--max-connections-per-ip",
            "1000",
        ],
    )
    .await;
    // 32 characters, 119 bytes of UTF-8 each.
    let nick = |i: usize| format!("{i:03}{}", "𝄞".repeat(29));
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let mut member = RawMember::connect(server.addr, PASS, None)
            .await
            .expect("connect");
        member.join(&nick(i)).await;
        // The welcome lists everyone in, the newcomer too; once that is too long for one
        // frame, the rest follows in `more_online`.
        let mut listed = match member.next_private().await {
            Some(ServerMessage::Welcome { online, .. }) => online,
            other => panic!("member {i} was not welcomed: {other:?}"),
        };
        while listed.len() < i + 1 {
            match member.next_private().await {
                Some(ServerMessage::MoreOnline { online }) => listed.extend(online),
                other => panic!("member {i}: expected more_online, got {other:?}"),
            }
        }
        listed.sort();
        let everyone: Vec<String> = (0..=i).map(nick).collect();
        assert_eq!(listed, everyone, "member {i}'s online list");
        members.push(member);
    }
    let mut newcomer = ChatProcess::start(server.addr, "newcomer", PASS, &[]).await;
    let online = newcomer
        .wait_for("the full online list", |e| {
            e["type"] == "online"
                && e["members"]
                    .as_array()
                    .is_some_and(|m| m.len() == MEMBERS + 1)
        })
        .await;
    let listed: Vec<&str> = online["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    for i in [0, 1, MEMBERS / 2, MEMBERS - 1] {
        assert!(listed.contains(&nick(i).as_str()), "{} listed", nick(i));
    }
    assert!(listed.contains(&"newcomer"));
    // And the room still works for the newcomer.
    newcomer.say("hola a todos").await;
    newcomer
        .wait_for("the echo of its own message", |e| {
            e["type"] == "message" && e["text"] == "hola a todos"
        })
        .await;
    drop(members);
}
