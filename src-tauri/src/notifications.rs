//! What the desktop shows for messages that arrive while the window is not focused (pure:
//! time comes in from outside). Peer text is escaped for the notification body, which the
//! freedesktop server may read as markup (`<b>`, `<a href>`, `&amp;`); messages are
//! coalesced, so several of them are one notification "N new messages from …" that is
//! replaced, not N popups; and popups are rate-limited to one per [`MIN_INTERVAL`], so a
//! member cannot flood the host's desktop: what arrives in between is shown, counted, when
//! the interval is over ([`Coalescer::due`]).

use std::time::{Duration, Instant};

/// At most one popup per this interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Characters of a message shown in its notification.
const BODY_CHARS: usize = 200;
/// Senders named in a summary; more are "…".
const NAMES_SHOWN: usize = 3;
/// Characters of one sender's nickname in a summary.
const NAME_CHARS: usize = 32;

/// The summary's wording, `{n}` and `{names}` filled in; the window sets it in its language.
pub const DEFAULT_SUMMARY: &str = "{n} new messages from {names}";
/// A photo shared by `{from}`; the window sets it in its language.
pub const DEFAULT_SHARED_PHOTO: &str = "{from} shared a photo";
/// Any other file shared by `{from}`; the window sets it in its language.
pub const DEFAULT_SHARED_FILE: &str = "{from} shared a file";

/// Escape `text` for a notification body: `&`, `<` and `>` become entities.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// One popup to show; `replace`: it replaces the previous one (same unread run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popup {
    pub title: String,
    /// Already escaped.
    pub body: String,
    pub replace: bool,
}

/// The unread run: messages since the window was last focused.
#[derive(Debug, Default)]
pub struct Coalescer {
    unread: u64,
    senders: Vec<String>,
    latest: Option<(String, String)>,
    last_shown: Option<Instant>,
    /// Messages arrived since the last popup.
    pending: bool,
}

impl Coalescer {
    /// A message from `from` arrived while unfocused: a popup now, or later ([`Self::due`]).
    pub fn message(
        &mut self,
        from: &str,
        text: &str,
        now: Instant,
        summary: &str,
    ) -> Option<Popup> {
        self.unread = self.unread.saturating_add(1);
        if !self.senders.iter().any(|s| s == from) && self.senders.len() <= NAMES_SHOWN {
            self.senders.push(from.chars().take(NAME_CHARS).collect());
        }
        self.latest = Some((
            from.chars().take(NAME_CHARS).collect(),
            text.chars().take(BODY_CHARS).collect(),
        ));
        self.pending = true;
        if self.last_shown.is_some_and(|at| now < at + MIN_INTERVAL) {
            return None;
        }
        self.popup(now, summary)
    }

    /// When the held-back messages are to be shown, if any are.
    pub fn due(&self) -> Option<Instant> {
        self.pending.then(|| {
            self.last_shown
                .map_or_else(Instant::now, |at| at + MIN_INTERVAL)
        })
    }

    /// The held-back messages' popup, once [`Self::due`].
    pub fn tick(&mut self, now: Instant, summary: &str) -> Option<Popup> {
        match self.due() {
            Some(at) if now >= at => self.popup(now, summary),
            _ => None,
        }
    }

    /// The window is focused: the run is read; the next message starts a new notification.
    pub fn read(&mut self) {
        *self = Self {
            last_shown: self.last_shown,
            ..Self::default()
        };
    }

    fn popup(&mut self, now: Instant, summary: &str) -> Option<Popup> {
        let (from, text) = self.latest.clone()?;
        let replace = self.last_shown.is_some() && self.unread > 1;
        self.last_shown = Some(now);
        self.pending = false;
        if self.unread == 1 {
            return Some(Popup {
                title: format!("{from} — Tertulia"),
                body: escape_markup(&text),
                replace,
            });
        }
        let mut names = self.senders[..self.senders.len().min(NAMES_SHOWN)].join(", ");
        if self.senders.len() > NAMES_SHOWN {
            names.push_str(", …");
        }
        let title = summary
            .replace("{n}", &self.unread.to_string())
            .replace("{names}", &names);
        Some(Popup {
            title,
            body: escape_markup(&format!("{from}: {text}")),
            replace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("<b>hi</b> & <a href=\"x\">y</a> &amp;"),
            "&lt;b&gt;hi&lt;/b&gt; &amp; &lt;a href=\"x\"&gt;y&lt;/a&gt; &amp;amp;"
        );
        assert_eq!(escape_markup("plain ñ"), "plain ñ");
    }

    #[test]
    fn the_first_message_pops_up_with_its_text_escaped() {
        let mut c = Coalescer::default();
        let popup = c
            .message("ben", "<i>hola</i>", Instant::now(), DEFAULT_SUMMARY)
            .unwrap();
        assert_eq!(popup.title, "ben — Tertulia");
        assert_eq!(popup.body, "&lt;i&gt;hola&lt;/i&gt;");
        assert!(!popup.replace);
    }

    #[test]
    fn a_flood_is_one_popup_per_interval_replaced_with_a_count() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let mut popups = Vec::new();
        // 1000 messages from two members over 10 s.
        for i in 0..1000u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 10);
            let from = if i % 2 == 0 { "ben" } else { "<carla>" };
            popups.extend(c.message(from, &format!("spam {i}"), now, DEFAULT_SUMMARY));
            popups.extend(c.tick(now, DEFAULT_SUMMARY));
        }
        let end = t0 + Duration::from_secs(10);
        assert_eq!(c.due(), Some(t0 + 2 * MIN_INTERVAL));
        popups.extend(c.tick(end + MIN_INTERVAL, DEFAULT_SUMMARY));
        assert_eq!(popups.len(), 3, "{popups:?}");
        assert!(!popups[0].replace);
        assert!(
            popups[1..].iter().all(|p| p.replace),
            "later ones replace it"
        );
        assert_eq!(popups[2].title, "1000 new messages from ben, <carla>");
        assert_eq!(popups[2].body, "&lt;carla&gt;: spam 999");
        assert_eq!(c.due(), None, "nothing held back");
    }

    #[test]
    fn reading_starts_a_new_run_but_keeps_the_rate_limit() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        assert!(c.message("ben", "a", t0, DEFAULT_SUMMARY).is_some());
        c.read();
        assert_eq!(c.due(), None);
        let t1 = t0 + Duration::from_secs(1);
        assert!(
            c.message("ben", "b", t1, DEFAULT_SUMMARY).is_none(),
            "rate-limited"
        );
        let popup = c.tick(t0 + MIN_INTERVAL, DEFAULT_SUMMARY).unwrap();
        assert_eq!(popup.title, "ben — Tertulia", "one unread message");
        assert_eq!(popup.body, "b");
        assert!(!popup.replace);
    }

    #[test]
    fn many_senders_are_named_up_to_three() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for name in ["a", "b", "c", "d", "e"] {
            c.message(name, "x", t0, "{n} de {names}");
        }
        let popup = c.tick(t0 + MIN_INTERVAL, "{n} de {names}").unwrap();
        assert_eq!(popup.title, "5 de a, b, c, …");
    }
}
