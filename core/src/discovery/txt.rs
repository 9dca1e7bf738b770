//! The pure half of LAN discovery (`docs/PROTOCOL.md` §14): what a host puts in its TXT
//! record, and what a browser makes of what it resolved — every field from the network
//! checked, cleaned for display and bounded — plus the table of rooms that decides which
//! resolutions are news ([`RoomTable`]). No sockets here; `super::mdns` does the I/O.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::identity::Fingerprint;
use crate::text::is_invisible;

use super::{Advert, DiscoveryEvent, FoundRoom, SERVICE_TYPE};

/// Longest room name in the TXT record and as an instance name, in UTF-8 bytes (one DNS label).
pub const MAX_ROOM_NAME_BYTES: usize = 63;
/// Longest instance and host name kept from the network, in UTF-8 bytes (a DNS name).
pub const MAX_NAME_BYTES: usize = 255;
/// Most addresses kept per room.
pub const MAX_ADDRESSES: usize = 8;
/// Most rooms a browser tracks at once; a new one beyond it displaces the oldest room of the
/// source with the most rooms ([`RoomTable`]).
pub const MAX_ROOMS: usize = 64;
/// Most rooms listed per source (the first address a room resolves to); more are ignored.
pub const MAX_ROOMS_PER_SOURCE: usize = 4;

/// TXT key of the room name.
pub const KEY_ROOM: &str = "room";
/// TXT key of the protocol version.
pub const KEY_VERSION: &str = "v";
/// TXT key of the host fingerprint.
pub const KEY_FINGERPRINT: &str = "fp";

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Characters an emoji is built with that render as nothing on their own: kept in shown text
/// (the zero-width joiner and the variation selectors change no text direction).
fn is_emoji_joiner(c: char) -> bool {
    matches!(c, '\u{200D}' | '\u{FE0E}' | '\u{FE0F}')
}

/// `text` made safe to show: control characters and invisible ones (zero-width, bidi
/// controls, tags…) left out except the emoji joiners, every run of whitespace one space,
/// trimmed, and cut to `max` bytes at a character boundary.
pub fn clean_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 4));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() || (is_invisible(c) && !is_emoji_joiner(c)) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
        if out.len() > max {
            break;
        }
    }
    cut(&out, max).trim_end().to_owned()
}

/// The room name as announced: cleaned and at most [`MAX_ROOM_NAME_BYTES`]; `fallback` when
/// nothing is left.
pub fn announced_room_name(name: &str, fallback: &str) -> String {
    let name = clean_text(name, MAX_ROOM_NAME_BYTES);
    if name.is_empty() {
        clean_text(fallback, MAX_ROOM_NAME_BYTES)
    } else {
        name
    }
}

/// A host name made into one DNS label: ASCII letters, digits and `-` (anything else becomes
/// `-`), no `-` at either end, at most 63 bytes (the end kept: it says which room); `tertulia`
/// when nothing is left.
pub fn host_label(name: &str) -> String {
    let mapped: Vec<char> = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mapped: String = mapped[mapped.len().saturating_sub(MAX_ROOM_NAME_BYTES)..]
        .iter()
        .collect();
    let label = mapped.trim_matches('-');
    if label.is_empty() {
        "tertulia".to_owned()
    } else {
        label.to_owned()
    }
}

/// The TXT record of `advert`: `room`, `v`, `fp` — nothing else, never the passphrase.
pub fn encode(advert: &Advert) -> Vec<(&'static str, String)> {
    vec![
        (
            KEY_ROOM,
            cut(&advert.room_name, MAX_ROOM_NAME_BYTES).to_owned(),
        ),
        (KEY_VERSION, advert.version.to_string()),
        (KEY_FINGERPRINT, advert.fingerprint.clone()),
    ]
}

/// What an mDNS browser resolved for one instance, as it came from the network.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The full service instance name, e.g. `Sala._tertulia._tcp.local.`.
    pub fullname: String,
    /// The SRV target, e.g. `lanA.local.`.
    pub host: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    /// TXT entries: key and value (`None`: a key without `=`).
    pub txt: Vec<(String, Option<Vec<u8>>)>,
}

impl Resolved {
    fn txt_value(&self, key: &str) -> Option<String> {
        self.txt
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// The instance label of a full service name (the part before `._tertulia._tcp.local.`).
fn instance_label(fullname: &str) -> &str {
    let lower = fullname.to_ascii_lowercase();
    let suffix = format!(".{SERVICE_TYPE}");
    if lower.ends_with(&suffix) && fullname.len() > suffix.len() {
        &fullname[..fullname.len() - suffix.len()]
    } else {
        fullname
    }
}

/// A protocol version from TXT: 1–3 ASCII digits, 1–255.
fn parse_version(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u8>().ok().filter(|&v| v > 0)
}

/// Which addresses a room is listed with: IPv4 first, then IPv6 that is not link-local, no
/// unspecified or multicast ones, no duplicates, at most [`MAX_ADDRESSES`].
fn usable_addresses(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => {
            !v6.is_unspecified() && !v6.is_multicast() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    };
    let mut v4: Vec<IpAddr> = addresses
        .iter()
        .filter(|ip| ip.is_ipv4() && usable(ip))
        .copied()
        .collect();
    let mut v6: Vec<IpAddr> = addresses
        .iter()
        .filter(|ip| ip.is_ipv6() && usable(ip))
        .copied()
        .collect();
    v4.sort();
    v6.sort();
    v4.append(&mut v6);
    v4.dedup();
    v4.truncate(MAX_ADDRESSES);
    v4
}

/// A room as a browser lists it, or `None` when the resolution is not a listable Tertulia
/// room (no valid `v`, port 0, no usable address). The `instance` is the cleaned full name;
/// [`RoomTable`] keeps it unique.
pub fn decode(resolved: &Resolved) -> Option<FoundRoom> {
    let version = parse_version(resolved.txt_value(KEY_VERSION)?.trim())?;
    if resolved.port == 0 {
        return None;
    }
    let addresses = usable_addresses(&resolved.addresses);
    if addresses.is_empty() {
        return None;
    }
    let instance = clean_text(&resolved.fullname, MAX_NAME_BYTES);
    let mut room_name = resolved
        .txt_value(KEY_ROOM)
        .map(|r| clean_text(&r, MAX_ROOM_NAME_BYTES))
        .unwrap_or_default();
    if room_name.is_empty() {
        room_name = clean_text(instance_label(&resolved.fullname), MAX_ROOM_NAME_BYTES);
    }
    let fingerprint = resolved
        .txt_value(KEY_FINGERPRINT)
        .and_then(|fp| fp.parse::<Fingerprint>().ok())
        .map(|fp| fp.to_string())
        .unwrap_or_default();
    let host = clean_text(resolved.host.trim_end_matches('.'), MAX_NAME_BYTES);
    Some(FoundRoom {
        instance,
        room_name,
        host,
        addresses,
        port: resolved.port,
        version,
        fingerprint,
    })
}

/// The rooms a browser has reported, keyed by their full name as resolved (case-folded, as
/// DNS names compare): decides whether a resolution is a new room, an update or nothing new,
/// keeps at most [`MAX_ROOMS`] and at most [`MAX_ROOMS_PER_SOURCE`] per source address, and
/// keeps reported instance names unique (docs/PROTOCOL.md §14).
#[derive(Debug, Default)]
pub struct RoomTable {
    rooms: HashMap<String, Listed>,
    /// Counts up as rooms are listed: the age order among them.
    next_seq: u64,
}

#[derive(Debug)]
struct Listed {
    room: FoundRoom,
    /// When it was first listed (from [`RoomTable::next_seq`]).
    seq: u64,
}

/// The address a room is counted under: its first (IPv4 first, so the first IPv4 if any).
fn source(room: &FoundRoom) -> Option<IpAddr> {
    room.addresses.first().copied()
}

impl RoomTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rooms are listed.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// An instance `resolved` again (or for the first time): the events to report, in order
    /// (none, one, or a room displaced to make place for a new one and then the new one).
    /// A listed room that no longer decodes (its `v` gone, say) is reported lost.
    pub fn resolved(&mut self, resolved: &Resolved) -> Vec<DiscoveryEvent> {
        let key = resolved.fullname.to_lowercase();
        let Some(mut room) = decode(resolved) else {
            return self.removed(&resolved.fullname).into_iter().collect();
        };
        if let Some(listed) = self.rooms.get_mut(&key) {
            room.instance = listed.room.instance.clone();
            if listed.room == room {
                return Vec::new();
            }
            listed.room = room.clone();
            return vec![DiscoveryEvent::Updated(room)];
        }
        let from = source(&room);
        let same_source = self
            .rooms
            .values()
            .filter(|l| source(&l.room) == from)
            .count();
        if same_source >= MAX_ROOMS_PER_SOURCE {
            return Vec::new();
        }
        let mut events = Vec::with_capacity(2);
        if self.rooms.len() >= MAX_ROOMS {
            events.extend(self.displace());
        }
        room.instance = self.unique_instance(room.instance);
        self.next_seq += 1;
        self.rooms.insert(
            key,
            Listed {
                room: room.clone(),
                seq: self.next_seq,
            },
        );
        events.push(DiscoveryEvent::Found(room));
        events
    }

    /// Drops the oldest room of the source with the most rooms (ties: the source whose
    /// oldest room is oldest), to make place for a new one: its `Lost`.
    fn displace(&mut self) -> Option<DiscoveryEvent> {
        let mut per_source: HashMap<Option<IpAddr>, (usize, u64, &str)> = HashMap::new();
        for (key, listed) in &self.rooms {
            let entry =
                per_source
                    .entry(source(&listed.room))
                    .or_insert((0, u64::MAX, key.as_str()));
            entry.0 += 1;
            if listed.seq < entry.1 {
                entry.1 = listed.seq;
                entry.2 = key.as_str();
            }
        }
        let victim = per_source
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))?
            .2
            .to_owned();
        self.rooms
            .remove(&victim)
            .map(|listed| DiscoveryEvent::Lost {
                instance: listed.room.instance,
            })
    }

    /// An instance withdrawn (goodbye) or expired: `Lost` if it was listed.
    pub fn removed(&mut self, fullname: &str) -> Option<DiscoveryEvent> {
        self.rooms
            .remove(&fullname.to_lowercase())
            .map(|listed| DiscoveryEvent::Lost {
                instance: listed.room.instance,
            })
    }

    /// Two different full names can clean to the same text: the later one gets ` (2)`, …
    fn unique_instance(&self, instance: String) -> String {
        let taken = |name: &str| self.rooms.values().any(|l| l.room.instance == name);
        if !taken(&instance) {
            return instance;
        }
        (2..)
            .map(|n| {
                let tail = format!(" ({n})");
                format!("{}{tail}", cut(&instance, MAX_NAME_BYTES - tail.len()))
            })
            .find(|name| !taken(name))
            .unwrap_or(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello::PROTOCOL_VERSION;

    const FP: &str = "6521-fc47-c9b6-6c07-b6a2-96fc";

    fn resolved(fullname: &str, txt: &[(&str, Option<&str>)]) -> Resolved {
        Resolved {
            fullname: fullname.into(),
            host: "lanA.local.".into(),
            port: 5555,
            addresses: vec!["10.77.0.2".parse().unwrap()],
            txt: txt
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(|v| v.as_bytes().to_vec())))
                .collect(),
        }
    }

    /// The events of one resolution, which must be at most one.
    fn one(events: Vec<DiscoveryEvent>) -> Option<DiscoveryEvent> {
        assert!(events.len() <= 1, "{events:?}");
        events.into_iter().next()
    }

    /// An instance `name` resolving to `address`.
    fn at(name: &str, address: [u8; 4]) -> Resolved {
        let mut r = resolved(
            &format!("{name}._tertulia._tcp.local."),
            &[("v", Some("2"))],
        );
        r.addresses = vec![IpAddr::from(address)];
        r
    }

    fn room(txt: &[(&str, Option<&str>)]) -> Option<FoundRoom> {
        decode(&resolved("Sala._tertulia._tcp.local.", txt))
    }

    #[test]
    fn an_advert_round_trips_through_its_txt_record() {
        let advert = Advert {
            room_name: "Sala de Ana ☕".into(),
            port: 5555,
            fingerprint: FP.into(),
            version: PROTOCOL_VERSION,
        };
        let txt = encode(&advert);
        assert_eq!(
            txt,
            vec![
                ("room", "Sala de Ana ☕".to_string()),
                ("v", PROTOCOL_VERSION.to_string()),
                ("fp", FP.to_string()),
            ]
        );
        let pairs: Vec<(&str, Option<&str>)> =
            txt.iter().map(|(k, v)| (*k, Some(v.as_str()))).collect();
        let found = room(&pairs).expect("listed");
        assert_eq!(found.room_name, "Sala de Ana ☕");
        assert_eq!(found.version, PROTOCOL_VERSION);
        assert_eq!(found.fingerprint, FP);
        assert_eq!(found.port, 5555);
        assert_eq!(found.host, "lanA.local");
        assert_eq!(found.instance, "Sala._tertulia._tcp.local.");
    }

    #[test]
    fn the_txt_record_holds_only_room_version_and_fingerprint() {
        let advert = Advert {
            room_name: "x".repeat(200),
            port: 1,
            fingerprint: FP.into(),
            version: 2,
        };
        let txt = encode(&advert);
        let keys: Vec<&str> = txt.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["room", "v", "fp"]);
        assert_eq!(txt[0].1.len(), MAX_ROOM_NAME_BYTES);
    }

    #[test]
    fn a_long_name_is_cut_at_a_character_boundary() {
        // 'ñ' is two bytes: 40 of them are 80 bytes, cut to 31 characters (62 bytes).
        let name = "ñ".repeat(40);
        let cut_name = announced_room_name(&name, "fallback");
        assert_eq!(cut_name, "ñ".repeat(31));
        assert!(cut_name.len() <= MAX_ROOM_NAME_BYTES);
        assert_eq!(cut("a€", 2), "a");
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(
            announced_room_name(" \u{202E}\u{0007} ", "Ana's room"),
            "Ana's room"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_left_out_and_whitespace_collapsed() {
        let hostile =
            "  Sala\u{0}\u{7}\u{1b}[31m \u{202E}lanigiro\u{202C}\n\n\t de\u{200B} Ana\u{2066}  ";
        assert_eq!(
            clean_text(hostile, MAX_ROOM_NAME_BYTES),
            "Sala[31m lanigiro de Ana"
        );
        // Emoji keep their joiners and selectors.
        assert_eq!(
            clean_text("👩\u{200D}💻 ❤\u{FE0F}", 63),
            "👩\u{200D}💻 ❤\u{FE0F}"
        );
        // C1 controls, DEL, tags (NEL is whitespace).
        assert_eq!(clean_text("a\u{85}b\u{7f}c\u{E0041}d\u{9b}e", 63), "a bcde");
        assert_eq!(clean_text("\u{0}\u{202E}", 63), "");
    }

    #[test]
    fn a_huge_value_is_bounded() {
        let huge = "A".repeat(100_000);
        let found = room(&[("v", Some("2")), ("room", Some(&huge))]).expect("listed");
        assert_eq!(found.room_name.len(), MAX_ROOM_NAME_BYTES);
        let mut long = resolved(
            &format!("{huge}._tertulia._tcp.local."),
            &[("v", Some("2"))],
        );
        long.host = format!("{huge}.local.");
        let found = decode(&long).expect("listed");
        assert!(found.instance.len() <= MAX_NAME_BYTES);
        assert!(found.host.len() <= MAX_NAME_BYTES);
        assert_eq!(found.room_name.len(), MAX_ROOM_NAME_BYTES);
    }

    #[test]
    fn without_a_valid_version_it_is_not_a_tertulia_room() {
        assert!(room(&[]).is_none());
        assert!(room(&[("room", Some("Sala"))]).is_none());
        for bad in ["", "0", "256", "-1", "2.0", "two", "0002", " ", "2\u{0}"] {
            assert!(room(&[("v", Some(bad))]).is_none(), "{bad:?}");
        }
        assert!(room(&[("v", None)]).is_none());
        assert_eq!(room(&[("v", Some("1"))]).map(|r| r.version), Some(1));
        assert_eq!(room(&[("V", Some("255"))]).map(|r| r.version), Some(255));
    }

    #[test]
    fn missing_name_or_fingerprint_fall_back() {
        let found = room(&[("v", Some("2"))]).expect("listed");
        assert_eq!(found.room_name, "Sala");
        assert_eq!(found.fingerprint, "");
        let found = room(&[("v", Some("2")), ("fp", Some("sha256:ab12cd34"))]).expect("listed");
        assert_eq!(found.fingerprint, "");
        // Any accepted spelling is shown canonical.
        let found =
            room(&[("v", Some("2")), ("fp", Some("6521FC47C9B66C07B6A296FC"))]).expect("listed");
        assert_eq!(found.fingerprint, FP);
        let found = room(&[("v", Some("2")), ("room", Some("\u{202E}\u{0}"))]).expect("listed");
        assert_eq!(found.room_name, "Sala");
    }

    #[test]
    fn addresses_ipv4_first_no_link_local_and_bounded() {
        let mut r = resolved("S._tertulia._tcp.local.", &[("v", Some("2"))]);
        r.addresses = [
            "fe80::1",
            "fd00::2",
            "10.0.0.9",
            "224.0.0.251",
            "0.0.0.0",
            "10.0.0.3",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let found = decode(&r).expect("listed");
        let shown: Vec<String> = found.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["10.0.0.3", "10.0.0.9", "fd00::2"]);
        r.addresses = (1..=50u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert_eq!(decode(&r).expect("listed").addresses.len(), MAX_ADDRESSES);
        r.addresses = vec!["fe80::1".parse().unwrap()];
        assert!(decode(&r).is_none());
        r.addresses = vec!["10.0.0.1".parse().unwrap()];
        r.port = 0;
        assert!(decode(&r).is_none());
    }

    #[test]
    fn the_table_reports_found_updated_and_lost_once_each() {
        let mut table = RoomTable::new();
        let a = resolved("Sala._tertulia._tcp.local.", &[("v", Some("2"))]);
        assert!(matches!(
            one(table.resolved(&a)),
            Some(DiscoveryEvent::Found(_))
        ));
        assert!(
            one(table.resolved(&a)).is_none(),
            "the same again is no news"
        );
        let mut moved = a.clone();
        moved.port = 6000;
        match one(table.resolved(&moved)) {
            Some(DiscoveryEvent::Updated(room)) => assert_eq!(room.port, 6000),
            other => panic!("{other:?}"),
        }
        // DNS names compare case-insensitively.
        assert!(matches!(
            table.removed("SALA._tertulia._tcp.local."),
            Some(DiscoveryEvent::Lost { instance }) if instance == "Sala._tertulia._tcp.local."
        ));
        assert!(table.removed("Sala._tertulia._tcp.local.").is_none());
        assert!(table.is_empty());
    }

    #[test]
    fn a_room_whose_version_disappears_is_lost() {
        let mut table = RoomTable::new();
        let a = resolved("Sala._tertulia._tcp.local.", &[("v", Some("2"))]);
        one(table.resolved(&a));
        let gone = resolved("Sala._tertulia._tcp.local.", &[]);
        assert!(matches!(
            one(table.resolved(&gone)),
            Some(DiscoveryEvent::Lost { .. })
        ));
        assert!(one(table.resolved(&gone)).is_none());
    }

    #[test]
    fn at_most_max_rooms_per_source_are_listed() {
        let mut table = RoomTable::new();
        for i in 0..100 {
            let event = one(table.resolved(&at(&format!("fake{i}"), [10, 99, 0, 1])));
            assert_eq!(event.is_some(), i < MAX_ROOMS_PER_SOURCE, "fake room {i}");
        }
        assert_eq!(table.len(), MAX_ROOMS_PER_SOURCE);
        // Another address is another source; an IPv6 address after the IPv4 one changes nothing.
        let mut real = at("real", [10, 77, 0, 2]);
        assert!(matches!(
            one(table.resolved(&real)),
            Some(DiscoveryEvent::Found(_))
        ));
        real.addresses.push("fd00::2".parse().unwrap());
        assert!(matches!(
            one(table.resolved(&real)),
            Some(DiscoveryEvent::Updated(_))
        ));
        // One leaving makes place for another from the same source.
        assert!(table.removed("fake0._tertulia._tcp.local.").is_some());
        assert!(one(table.resolved(&at("fake50", [10, 99, 0, 1]))).is_some());
        assert!(one(table.resolved(&at("fake51", [10, 99, 0, 1]))).is_none());
    }

    #[test]
    fn a_full_list_drops_the_oldest_room_of_the_source_with_most_rooms() {
        let mut table = RoomTable::new();
        // MAX_ROOMS rooms: 4 from each of 16 sources, 10.99.0.1 first.
        for i in 0..MAX_ROOMS {
            let source = [10, 99, 0, 1 + (i / MAX_ROOMS_PER_SOURCE) as u8];
            assert!(one(table.resolved(&at(&format!("fake{i}"), source))).is_some());
        }
        assert_eq!(table.len(), MAX_ROOMS);
        // A real room from a new source is listed; the oldest fake of the first source goes.
        let events = table.resolved(&at("real", [10, 77, 0, 2]));
        assert!(
            matches!(events.as_slice(), [
                DiscoveryEvent::Lost { instance },
                DiscoveryEvent::Found(found),
            ] if instance == "fake0._tertulia._tcp.local." && found.room_name == "real"),
            "{events:?}"
        );
        assert_eq!(table.len(), MAX_ROOMS);
        // The next newcomer displaces from a source that still has 4 (the second one), never
        // the real room, the only one of its source.
        let events = table.resolved(&at("second", [10, 77, 0, 3]));
        assert!(
            matches!(events.as_slice(), [DiscoveryEvent::Lost { instance }, DiscoveryEvent::Found(_)]
                if instance == "fake4._tertulia._tcp.local."),
            "{events:?}"
        );
        // 100 more from 25 new sources: 64 rooms over at most 16 + 25 + 2 sources, so some
        // source always has 2 or more and a room alone from its source is never the one to go.
        for i in 0..100 {
            let events = table.resolved(&at(&format!("churn{i}"), [10, 88, (i / 4) as u8, 1]));
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, DiscoveryEvent::Lost { instance }
                    if instance.starts_with("real") || instance.starts_with("second"))),
                "churn {i}: {events:?}"
            );
            assert!(table.len() <= MAX_ROOMS);
        }
    }

    #[test]
    fn names_that_clean_to_the_same_text_stay_apart() {
        let mut table = RoomTable::new();
        let a = resolved("Sala._tertulia._tcp.local.", &[("v", Some("2"))]);
        let b = resolved("Sa\u{200B}la._tertulia._tcp.local.", &[("v", Some("2"))]);
        let Some(DiscoveryEvent::Found(first)) = one(table.resolved(&a)) else {
            panic!()
        };
        let Some(DiscoveryEvent::Found(second)) = one(table.resolved(&b)) else {
            panic!()
        };
        assert_eq!(first.instance, "Sala._tertulia._tcp.local.");
        assert_eq!(second.instance, "Sala._tertulia._tcp.local. (2)");
        assert!(matches!(
            table.removed("Sa\u{200B}la._tertulia._tcp.local."),
            Some(DiscoveryEvent::Lost { instance }) if instance == second.instance
        ));
    }

    #[test]
    fn host_names_become_one_dns_label() {
        assert_eq!(host_label("ana-laptop"), "ana-laptop");
        assert_eq!(host_label("Ana's Mac.home"), "Ana-s-Mac-home");
        assert_eq!(host_label("ñandú"), "and");
        assert_eq!(host_label("---"), "tertulia");
        assert_eq!(host_label(&"x".repeat(100)).len(), 63);
        let long = host_label(&format!("{}-5555", "y".repeat(100)));
        assert!(long.len() == 63 && long.ends_with("-5555"), "{long}");
    }
}
