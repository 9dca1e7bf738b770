//! Nicknames that look the same are the same (issue #12): through the real server, members
//! joining as look-alikes of someone online (another case, full width, a Cyrillic letter,
//! the decomposed form) are refused, and so are blank names and stacks of combining marks.
//! The last member's roster shows only the distinct names that were let in.

use tertulia_core::message::ServerMessage;
use tertulia_core::text::NickError;
use tertulia_e2e::{RawMember, ServerProcess};

const PASS: &str = "nickname passphrase";

/// Join as `nick` on a fresh connection: `Ok(roster)` on welcome, `Err(reason)` on refusal.
async fn join(server: &ServerProcess, nick: &str) -> (RawMember, Result<Vec<String>, NickError>) {
    let mut member = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    member.join(nick).await;
    loop {
        match member.next_private().await {
            Some(ServerMessage::Welcome { online, .. }) => return (member, Ok(online)),
            Some(ServerMessage::NickRejected { reason, .. }) => return (member, Err(reason)),
            Some(_) => continue,
            None => panic!("{nick:?}: closed before a welcome or a refusal"),
        }
    }
}

#[tokio::test]
async fn look_alike_blank_and_stacked_nicknames_cannot_be_online_as_different_people() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut online = Vec::new();
    for nick in ["ana", "coco", "Jos\u{E9}"] {
        let (member, joined) = join(&server, nick).await;
        assert!(joined.is_ok(), "{nick:?}: {joined:?}");
        online.push(member);
    }

    for (look_alike, why, reason) in [
        ("ANA", "upper case", NickError::Taken),
        (
            "\u{FF21}\u{FF2E}\u{FF21}",
            "full width ＡＮＡ",
            NickError::Taken,
        ),
        ("ana\u{FE0F}", "a variation selector", NickError::Taken),
        (
            "\u{0441}\u{043E}\u{0441}\u{043E}",
            "all-Cyrillic сосо",
            NickError::Taken,
        ),
        ("Jose\u{301}", "decomposed José", NickError::Taken),
        ("JOSÉ", "upper-case José", NickError::Taken),
        (
            "\u{0430}na",
            "a Cyrillic а among Latin",
            NickError::MixedScripts,
        ),
        (
            "\u{2800}",
            "only U+2800 BRAILLE PATTERN BLANK",
            NickError::NoLetterOrDigit,
        ),
        ("ana\u{2800}", "a blank after ana", NickError::BadWhitespace),
        (
            "\u{301}\u{302}\u{303}",
            "only combining marks",
            NickError::NoLetterOrDigit,
        ),
        (
            "a\u{300}\u{301}\u{302}\u{303}\u{304}\u{305}\u{306}",
            "stacked combining marks",
            NickError::StackedMarks,
        ),
    ] {
        let (_member, joined) = join(&server, look_alike).await;
        assert_eq!(joined, Err(reason), "{why}: {look_alike:?}");
    }

    let (_last, joined) = join(&server, "zed").await;
    let mut roster = joined.expect("zed joins");
    roster.sort();
    assert_eq!(roster, ["Jos\u{E9}", "ana", "coco", "zed"]);
}
