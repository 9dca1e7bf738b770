//! Property tests: framing round trips under any chunking, sealed messages round trips, and the
//! outbox/ack/dedupe protocol delivering exactly once, in order, over connections that break
//! (losing what is in flight and acks) and reconnect at random.

use proptest::prelude::*;
use tertulia_core::cipher::CipherState;
use tertulia_core::frame::{self, FrameKind, MAX_BODY};
use tertulia_core::message::{ClientMessage, ServerMessage};
use tertulia_core::outbox::{Dedupe, Outbox, Seen};
use tertulia_core::sealed;

fn kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        Just(FrameKind::Hello),
        Just(FrameKind::HandshakeInit),
        Just(FrameKind::HandshakeResponse),
        Just(FrameKind::Session),
        Just(FrameKind::Broadcast),
        Just(FrameKind::Reject),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Frames written back to back and read in arbitrary chunks come out as they went in.
    #[test]
    fn frames_round_trip_under_any_chunking(
        frames in prop::collection::vec((kind(), prop::collection::vec(any::<u8>(), 0..600)), 1..12),
        cuts in prop::collection::vec(1usize..700, 1..40),
    ) {
        let mut wire = Vec::new();
        for (kind, body) in &frames {
            frame::encode_into(&mut wire, *kind, body);
        }
        // Feed the bytes in chunks, decoding whatever is complete, like the socket reader.
        let mut buffered: Vec<u8> = Vec::new();
        let mut decoded = Vec::new();
        let mut offset = 0;
        let mut cut = cuts.iter().cycle();
        while offset < wire.len() {
            let take = (*cut.next().unwrap()).min(wire.len() - offset);
            buffered.extend_from_slice(&wire[offset..offset + take]);
            offset += take;
            while let Some((f, used)) = frame::decode(&buffered, MAX_BODY).unwrap() {
                decoded.push((f.kind, f.body.to_vec()));
                buffered.drain(..used);
            }
        }
        prop_assert!(buffered.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    /// Arbitrary bytes never panic the decoder, and a decoded frame never claims more than it has.
    #[test]
    fn decoding_arbitrary_bytes_is_safe(bytes in prop::collection::vec(any::<u8>(), 0..2048), limit in 0usize..4096) {
        if let Ok(Some((f, used))) = frame::decode(&bytes, limit) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(used, frame::HEADER_LEN + f.body.len());
            prop_assert!(f.body.len() <= limit);
        }
    }

    /// Any chat text survives sealing and opening; any single flipped bit is detected.
    #[test]
    fn sealed_messages_round_trip_and_tampering_is_detected(
        text in "\\PC{0,300}",
        id in any::<u64>(),
        key in any::<[u8; 32]>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let message = ClientMessage::Say { id, text };
        let mut tx = CipherState::new(&key);
        let mut rx = CipherState::new(&key);
        let mut wire = Vec::new();
        sealed::seal_session(&mut tx, &message, &mut wire).unwrap();
        let opened: ClientMessage = sealed::open_session(&mut rx, &wire[frame::HEADER_LEN..]).unwrap();
        prop_assert_eq!(&opened, &message);

        let mut tampered = wire.clone();
        let bit = flip.index(tampered.len() * 8);
        if bit >= frame::HEADER_LEN * 8 {
            tampered[bit / 8] ^= 1 << (bit % 8);
            let mut tx = CipherState::new(&key);
            let mut rx = CipherState::new(&key);
            let mut again = Vec::new();
            sealed::seal_session(&mut tx, &message, &mut again).unwrap();
            prop_assert_eq!(&again, &wire);
            let result: Result<ServerMessage, _> = sealed::open_session(&mut rx, &tampered[frame::HEADER_LEN..]);
            prop_assert!(result.is_err());
        }
    }
}

/// What can happen on the simulated link between one client and the server.
#[derive(Debug, Clone)]
enum Step {
    /// The user types a message.
    Type,
    /// The next message in flight reaches the server (and its ack may come back).
    Deliver { ack_lost: bool },
    /// The connection breaks: everything in flight is lost (TCP loses a suffix, never a
    /// message in the middle); the client reconnects and resends its outbox.
    Break,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Type),
        4 => any::<bool>().prop_map(|ack_lost| Step::Deliver { ack_lost }),
        1 => Just(Step::Break),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the link does, once it behaves, the room holds every typed message exactly
    /// once, in typing order, and the client's outbox is empty.
    #[test]
    fn outbox_ack_and_dedupe_deliver_exactly_once_in_order(steps in prop::collection::vec(step(), 0..300)) {
        let client = "0123456789abcdef0123456789abcdef".to_string();
        let mut outbox = Outbox::default();
        let mut dedupe = Dedupe::default();
        let mut room: Vec<String> = Vec::new();
        let mut typed: Vec<String> = Vec::new();
        let mut in_flight: std::collections::VecDeque<(u64, String)> = Default::default();

        let receive = |id: u64, text: String, dedupe: &mut Dedupe, room: &mut Vec<String>| {
            if dedupe.check(&client, id) == Seen::Fresh {
                room.push(text);
            }
            dedupe.highest(&client)
        };
        for step in steps {
            match step {
                Step::Type => {
                    let text = format!("message {}", typed.len());
                    if let Ok(id) = outbox.push(text.clone()) {
                        typed.push(text.clone());
                        in_flight.push_back((id, text));
                    }
                }
                Step::Deliver { ack_lost } => {
                    if let Some((id, text)) = in_flight.pop_front() {
                        let up_to = receive(id, text, &mut dedupe, &mut room);
                        if !ack_lost {
                            outbox.ack(up_to);
                        }
                    }
                }
                Step::Break => {
                    // The welcome tells the client what the room already has, then it resends.
                    outbox.ack(dedupe.highest(&client));
                    in_flight = outbox.pending().map(|p| (p.id, p.text.clone())).collect();
                }
            }
        }
        // The link heals: reconnect and deliver everything.
        outbox.ack(dedupe.highest(&client));
        for pending in outbox.pending().map(|p| (p.id, p.text.clone())).collect::<Vec<_>>() {
            let up_to = receive(pending.0, pending.1, &mut dedupe, &mut room);
            outbox.ack(up_to);
        }
        prop_assert!(outbox.is_empty());
        prop_assert_eq!(room, typed);
    }
}
