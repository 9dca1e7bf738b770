//! Terminal rendering of chat events for `tertulia-chat`.
//!
//! Peer-controlled text never reaches the terminal raw: control characters (escape sequences
//! included) and invisible or bidirectional-override characters are shown as visible `<U+XXXX>`
//! escapes, and continuation lines of a multi-line message are indented behind a `│` gutter,
//! so a message can never pass itself off as a notice from the program.

use std::collections::HashMap;

use chrono::{Local, TimeZone};
use tertulia_core::client::{ClientEvent, ErrorKind, TransferDirection};
use tertulia_core::text::{hidden_character, is_invisible};

use crate::lang::Lang;

/// Replace every character a peer could use to control the terminal or hide text. The
/// invisible parts of emoji (selectors, joiners, flag tags) are kept where an emoji puts
/// them, so ❤️ and 🏳️‍🌈 show as emoji.
pub fn sanitize(text: &str) -> String {
    let emoji_parts_ok = hidden_character(text, |c| c == '\t').is_none();
    let is_emoji_part = |c: char| {
        matches!(
            c,
            '\u{FE0E}' | '\u{FE0F}' | '\u{200D}' | '\u{E0020}'..='\u{E007F}'
        )
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\t' {
            out.push_str("    ");
        } else if c.is_control()
            || is_invisible(c) && c != '\u{200D}' && !(emoji_parts_ok && is_emoji_part(c))
        {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    pub fn notice(&self, text: &str) -> String {
        self.paint("2;36", &format!("*** {text}"))
    }
    pub fn warn(&self, text: &str) -> String {
        self.paint("33", &format!("*** {text}"))
    }
    pub fn error(&self, text: &str) -> String {
        self.paint("1;31", &format!("*** {text}"))
    }
}

/// Local hours and minutes, 24-hour in every language.
fn clock(time_ms: u64) -> String {
    match Local.timestamp_millis_opt(time_ms as i64).single() {
        Some(t) => t.format("%H:%M").to_string(),
        None => "--:--".into(),
    }
}

/// A chat message, possibly over several lines.
pub fn message(style: Style, time_ms: u64, from: &str, text: &str, own: bool) -> String {
    let from = sanitize(from);
    let who = if own {
        style.paint("1;32", &from)
    } else {
        style.paint("1;34", &from)
    };
    let head = format!("[{}] {who}: ", clock(time_ms));
    let mut lines = text.split('\n').map(sanitize);
    let mut out = format!("{head}{}", lines.next().unwrap_or_default());
    for line in lines {
        out.push('\n');
        out.push_str(&style.paint("2", "        │ "));
        out.push_str(&line);
    }
    out
}

/// One line (or block) for an event in `lang`, or `None` for events not shown in interactive
/// mode. A page of older history shows its events exactly as live ones.
pub fn event(style: Style, lang: Lang, event: &ClientEvent) -> Option<String> {
    Some(match event {
        ClientEvent::Connecting { attempt, addr } if *attempt <= 1 => {
            style.notice(&lang.connecting(&sanitize(addr)))
        }
        ClientEvent::Connecting { .. } => return None,
        ClientEvent::Connected {
            nick,
            resumed,
            room_reset,
            gap,
            host_fingerprint,
            ..
        } => format!(
            "{}\n{}",
            style.notice(&lang.in_room(&sanitize(nick), *resumed, *room_reset, *gap)),
            style.notice(&lang.host_identity(&sanitize(host_fingerprint)))
        ),
        ClientEvent::NickRejected {
            nick,
            reason,
            message,
        } => style.warn(&lang.nick_refused(&sanitize(nick), *reason, &sanitize(message))),
        ClientEvent::Online { members } if members.is_empty() => return None,
        ClientEvent::Online { members } => {
            let names: Vec<String> = members.iter().map(|m| sanitize(m)).collect();
            style.notice(&lang.online(&names))
        }
        ClientEvent::Message {
            time_ms,
            from,
            text,
            own,
            ..
        } => message(style, *time_ms, from, text, *own),
        ClientEvent::Join { time_ms, nick, .. } => {
            style.notice(&lang.joined(&clock(*time_ms), &sanitize(nick)))
        }
        ClientEvent::Leave {
            time_ms,
            nick,
            reason,
            ..
        } => style.notice(&lang.left(&clock(*time_ms), &sanitize(nick), *reason)),
        ClientEvent::Older { events, more } => {
            let mut lines = vec![style.notice(&lang.older_start())];
            lines.extend(events.iter().filter_map(|e| self::event(style, lang, e)));
            lines.push(style.notice(&lang.older_end(*more, events.is_empty())));
            lines.join("\n")
        }
        ClientEvent::FileOffered {
            time_ms,
            from,
            file_id,
            name,
            size,
            own,
            history,
            ..
        } => {
            let from = sanitize(from);
            let who = if *own {
                style.paint("1;32", &from)
            } else {
                style.paint("1;34", &from)
            };
            // Files from the history are not fetched on their own: say how to.
            let earlier = (*history && !*own).then_some(*file_id);
            lang.file_offered(&clock(*time_ms), &who, &sanitize(name), *size, earlier)
        }
        ClientEvent::FileReceived {
            name,
            path: Some(path),
            ..
        } => style.notice(&lang.file_saved(&sanitize(name), &sanitize(path))),
        ClientEvent::FileReceived { path: None, .. } => return None,
        ClientEvent::FileSent { upload_id, .. } => style.notice(&lang.file_sent(*upload_id)),
        ClientEvent::FileFailed {
            direction,
            name,
            reason,
            message,
            ..
        } => {
            style.warn(&lang.file_failed(*direction, &sanitize(name), *reason, &sanitize(message)))
        }
        // Kept terse by [`ProgressLines`].
        ClientEvent::FileProgress { .. } => return None,
        ClientEvent::Acked { .. } | ClientEvent::Countdown { .. } | ClientEvent::Typing { .. } => {
            return None
        }
        ClientEvent::MessageRejected {
            id,
            reason,
            message,
        } => style.warn(&lang.not_delivered(*id, *reason, &sanitize(message))),
        ClientEvent::Error {
            kind,
            message,
            retry_after_secs,
            pinned_fingerprint,
            presented_fingerprint,
        } => match (kind, pinned_fingerprint, presented_fingerprint) {
            (ErrorKind::HostIdentityChanged, Some(pinned), Some(presented)) => format!(
                "{}\n{}",
                style.error(&lang.host_identity_changed(
                    &sanitize(message),
                    &sanitize(pinned),
                    &sanitize(presented)
                )),
                style.warn(&lang.accept_new_host_hint(&sanitize(presented)))
            ),
            _ => style.error(&lang.client_error(*kind, &sanitize(message), *retry_after_secs)),
        },
        ClientEvent::Reconnecting {
            attempt, delay_ms, ..
        } => style.warn(&lang.reconnecting(*delay_ms, *attempt)),
        ClientEvent::Disconnected { reason, message } => {
            style.notice(&lang.disconnected(*reason, &sanitize(message)))
        }
    })
}

/// Progress shown terse: a line when a transfer starts or resumes and at each quarter, not at
/// every report.
#[derive(Debug, Default)]
pub struct ProgressLines {
    /// The last quarter shown per transfer in progress.
    shown: HashMap<(TransferDirection, u64), u64>,
}

/// Transfers whose progress is followed at once (more are shown without the quarters).
const PROGRESS_FOLLOWED: usize = 256;

impl ProgressLines {
    /// The line for `event` if it is worth one.
    pub fn line(&mut self, style: Style, lang: Lang, event: &ClientEvent) -> Option<String> {
        match event {
            ClientEvent::FileProgress {
                direction,
                id,
                name,
                done,
                size,
            } => {
                let quarter = done.saturating_mul(4).checked_div(*size).unwrap_or(4);
                let key = (*direction, *id);
                let show = match self.shown.get(&key) {
                    Some(&last) => quarter > last || *done == 0,
                    None => true,
                };
                if !show || quarter >= 4 {
                    return None;
                }
                if self.shown.len() >= PROGRESS_FOLLOWED && !self.shown.contains_key(&key) {
                    self.shown.clear();
                }
                self.shown.insert(key, quarter);
                Some(style.notice(&lang.file_progress(*direction, &sanitize(name), *done, *size)))
            }
            ClientEvent::FileSent { upload_id, .. } => {
                self.shown.remove(&(TransferDirection::Upload, *upload_id));
                None
            }
            ClientEvent::FileReceived { file_id, .. } => {
                self.shown.remove(&(TransferDirection::Download, *file_id));
                None
            }
            ClientEvent::FileFailed { direction, id, .. } => {
                self.shown.remove(&(*direction, *id));
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Style = Style { color: false };

    #[test]
    fn escapes_never_reach_the_terminal() {
        let evil = "hi\x1b[2J\x1b]0;owned\x07\u{202E}gnp.exe\r";
        let shown = sanitize(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "hi<U+001B>[2J<U+001B>]0;owned<U+0007><U+202E>gnp.exe<U+000D>"
        );
    }

    #[test]
    fn emoji_show_as_emoji_and_hidden_tags_do_not() {
        for emoji in ["❤️", "🏳️‍🌈", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"] {
            assert_eq!(sanitize(emoji), emoji);
        }
        assert_eq!(
            sanitize("hi\u{E0068}"),
            "hi<U+E0068>",
            "tags outside a flag are shown"
        );
        assert_eq!(sanitize("\u{FE0F}x"), "<U+FE0F>x");
    }

    #[test]
    fn multi_line_messages_cannot_fake_notices() {
        let shown = message(PLAIN, 0, "mallory", "hello\n*** admin joined\n", false);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("mallory: hello"));
        assert!(lines[1].starts_with("        │ *** admin joined"));
        assert!(lines.iter().skip(1).all(|l| l.starts_with("        │ ")));
    }

    #[test]
    fn events_speak_the_chosen_language() {
        let join = ClientEvent::Join {
            seq: 1,
            time_ms: 0,
            nick: "ana\x1b[2J".into(),
            history: false,
        };
        let es = event(PLAIN, Lang::Es, &join).unwrap_or_default();
        let en = event(PLAIN, Lang::En, &join).unwrap_or_default();
        assert!(es.ends_with("] ana<U+001B>[2J se ha unido"), "{es}");
        assert!(en.ends_with("] ana<U+001B>[2J joined"), "{en}");
        let time = &es[5..10];
        assert!(
            time.as_bytes()[2] == b':' && time[..2].parse::<u8>().is_ok_and(|h| h < 24),
            "24-hour time: {es}"
        );
        let older = ClientEvent::Older {
            events: vec![join],
            more: false,
        };
        let shown = event(PLAIN, Lang::Es, &older).unwrap_or_default();
        assert_eq!(shown.lines().count(), 3);
        assert!(shown.contains("se ha unido") && shown.contains("inicio del historial"));
    }

    #[test]
    fn file_names_are_shown_inert_and_progress_is_terse() {
        let offered = ClientEvent::FileOffered {
            seq: 1,
            time_ms: 0,
            from: "mallory".into(),
            file_id: 9,
            name: "invoice\u{202E}gnp.exe\x1b[2J".into(),
            size: 10,
            mime: "application/octet-stream".into(),
            sha256: String::new(),
            own: false,
            upload_id: None,
            history: true,
        };
        let shown = event(PLAIN, Lang::En, &offered).unwrap_or_default();
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202E}'),
            "{shown:?}"
        );
        assert!(
            shown.contains("<U+202E>") && shown.ends_with("/get 9 to fetch it"),
            "{shown}"
        );
        let mut lines = ProgressLines::default();
        let progress = |done| ClientEvent::FileProgress {
            direction: TransferDirection::Download,
            id: 9,
            name: "a".into(),
            done,
            size: 100,
        };
        let shown: Vec<u64> = (0..=100)
            .filter(|done| lines.line(PLAIN, Lang::En, &progress(*done)).is_some())
            .collect();
        assert_eq!(shown, vec![0, 25, 50, 75]);
    }

    #[test]
    fn separators_and_markup_are_shown_as_typed() {
        let shown = message(PLAIN, 0, "a|b", "x | y : \"z\" <b>", true);
        assert!(shown.ends_with("a|b: x | y : \"z\" <b>"));
    }
}
