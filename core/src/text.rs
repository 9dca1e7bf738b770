//! Rules for user-supplied text: nicknames and chat messages.
//!
//! Nicknames (`docs/PROTOCOL.md` §7): two names that look alike on screen are the same name.
//! A name is kept as typed (NFC); it is unique under [`nick_key`], its UTS #39 confusable
//! skeleton after NFKC and case folding. It must hold a letter or digit, may not contain
//! control, invisible (Default_Ignorable) or blank characters, any whitespace but single ASCII
//! spaces, stacks of combining marks, or words that mix scripts (`аna` with a Cyrillic `а`).
//! Every character class here comes from Unicode data (`unicode-normalization`,
//! `unicode-security`, the standard library's properties), not from hand-kept lists. Message
//! text is free: `|`, `:`, quotes, markup and
//! newlines are plain characters; only control characters other than `\n` and `\t`, and
//! invisible characters, are refused — except the invisible parts of emoji, where an emoji
//! puts them (variation selectors, the zero-width joiner, flag tags: [`hidden_character`]).

use serde::{Deserialize, Serialize};
use thiserror::Error;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{skeleton, MixedScript};

/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 32;
/// Most combining marks on one base character (after NFD), as UTS #39 §5.4 suggests.
pub const MAX_NICK_MARKS: usize = 4;
/// Longest chat message, in UTF-8 bytes.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Why a nickname was refused. Sent to the client as a code (on the wire a varint, 0–7 in
/// order); the display text says what to do.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NickError {
    #[error("the nickname is empty")]
    Empty,
    #[error("the nickname is longer than {MAX_NICK_CHARS} characters")]
    TooLong,
    #[error("the nickname contains control or invisible characters")]
    InvisibleCharacters,
    #[error("the nickname may only contain single spaces between words")]
    BadWhitespace,
    #[error("the nickname needs at least one letter or digit")]
    NoLetterOrDigit,
    #[error("the nickname stacks too many accents or marks on one letter")]
    StackedMarks,
    #[error("a word of the nickname mixes alphabets (for example Latin and Cyrillic letters)")]
    MixedScripts,
    #[error(
        "that nickname, or one that looks the same, is already taken in this room; pick another"
    )]
    Taken,
    /// A reason a newer server gives that this version does not know. Never sent.
    #[error("the room refused the nickname; pick another")]
    #[serde(other, skip_serializing)]
    Other,
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageTextError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is longer than the room allows ({MAX_MESSAGE_BYTES} bytes at most, or the server's lower limit)")]
    TooLong,
    #[error("the message contains control or invisible characters")]
    InvisibleCharacters,
    /// Sent by the server only: message ids start at 1.
    #[error("the message id must be 1 or more")]
    BadId,
    /// A reason a newer server gives that this version does not know. Never sent.
    #[error("the room refused the message")]
    #[serde(other, skip_serializing)]
    Other,
}

/// Characters that render as nothing or change how neighbouring text renders: Unicode format
/// characters (Cf), fillers, variation selectors and the like.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Is `c` drawn as something: not a control, invisible or whitespace character?
fn is_visible(c: char) -> bool {
    !c.is_control() && !is_invisible(c) && !c.is_whitespace()
}

/// The first character of `text` that would hide or control text: a control character
/// `control_ok` does not allow, or an invisible character that is not part of an emoji.
/// Emoji parts (`docs/PROTOCOL.md`, Room semantics): a variation selector right after a
/// visible character; a zero-width joiner between a visible character (or a selector) and a
/// visible character; tag characters only in a sequence right after U+1F3F4 (black flag)
/// ending with U+E007F (cancel tag).
pub fn hidden_character(text: &str, control_ok: impl Fn(char) -> bool) -> Option<char> {
    let mut prev: Option<char> = None;
    let mut in_tags = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let ok = if in_tags {
            in_tags = c != '\u{E007F}';
            matches!(c, '\u{E0020}'..='\u{E007F}')
        } else {
            match c {
                '\u{FE0E}' | '\u{FE0F}' => prev.is_some_and(is_visible),
                '\u{200D}' => {
                    prev.is_some_and(|p| is_visible(p) || matches!(p, '\u{FE0E}' | '\u{FE0F}'))
                        && chars.peek().is_some_and(|&next| is_visible(next))
                }
                '\u{E0020}'..='\u{E007E}' if prev == Some('\u{1F3F4}') => {
                    in_tags = true;
                    true
                }
                c if c.is_control() => control_ok(c),
                c => !is_invisible(c),
            }
        };
        if !ok {
            return Some(c);
        }
        prev = Some(c);
    }
    // A tag sequence never cancelled hides whatever follows it.
    in_tags.then_some('\u{E007F}')
}

/// Validate a nickname; returns it trimmed and in NFC, otherwise as typed.
pub fn validate_nick(raw: &str) -> Result<String, NickError> {
    let nick: String = raw.trim().nfc().collect();
    if nick.is_empty() {
        return Err(NickError::Empty);
    }
    if nick.chars().count() > MAX_NICK_CHARS {
        return Err(NickError::TooLong);
    }
    if hidden_character(&nick, |_| false).is_some()
        || nick
            .chars()
            .any(|c| is_default_ignorable(c) && !is_emoji_part(c))
    {
        return Err(NickError::InvisibleCharacters);
    }
    if !nick
        .chars()
        .any(|c| c.is_alphanumeric() && !is_combining_mark(c))
    {
        return Err(NickError::NoLetterOrDigit);
    }
    if nick.chars().any(|c| c != ' ' && looks_blank(c)) || nick.contains("  ") {
        return Err(NickError::BadWhitespace);
    }
    if stacks_marks(&nick) {
        return Err(NickError::StackedMarks);
    }
    if !nick.split(' ').all(|word| word.is_single_script()) {
        return Err(NickError::MixedScripts);
    }
    Ok(nick)
}

/// Default_Ignorable_Code_Point: the characters a UTS #39 skeleton drops (they render as
/// nothing).
fn is_default_ignorable(c: char) -> bool {
    let mut buf = [0; 4];
    let ignorable = skeleton(c.encode_utf8(&mut buf)).next().is_none();
    ignorable
}

/// The invisible characters emoji are built with; [`hidden_character`] checks where they stand.
fn is_emoji_part(c: char) -> bool {
    matches!(
        c,
        '\u{FE0E}' | '\u{FE0F}' | '\u{200D}' | '\u{E0020}'..='\u{E007F}'
    )
}

/// Whitespace, or a character whose confusable prototype is only whitespace (U+2800 BRAILLE
/// PATTERN BLANK looks like a space).
fn looks_blank(c: char) -> bool {
    let mut buf = [0; 4];
    let mut prototype = skeleton(c.encode_utf8(&mut buf)).peekable();
    let blank =
        c.is_whitespace() || (prototype.peek().is_some() && prototype.all(char::is_whitespace));
    blank
}

/// Does `nick` put a combining mark where there is no letter to carry it, the same mark twice
/// on one letter, or more than [`MAX_NICK_MARKS`] marks on one letter? Emoji variation
/// selectors are not counted.
fn stacks_marks(nick: &str) -> bool {
    let mut run: Vec<char> = Vec::new();
    let mut base = false;
    for c in nick.nfd() {
        if matches!(c, '\u{FE0E}' | '\u{FE0F}') {
            continue;
        }
        if !is_combining_mark(c) {
            base = c != ' ';
            run.clear();
            continue;
        }
        if !base || run.contains(&c) || run.len() == MAX_NICK_MARKS {
            return true;
        }
        run.push(c);
    }
    false
}

/// The key under which nicknames are unique: names that look the same on screen have the same
/// key. NFKC (full-width `ＡＮＡ` is `ANA`), case folding (upper- then lower-casing: `ß` is
/// `ss`, final `ς` is `σ`), the UTS #39 confusable skeleton (Cyrillic `а` is Latin `a`,
/// invisible characters such as variation selectors dropped), then folding and skeleton once
/// more (a prototype may be a capital: `0` is `O`), blanks collapsed to single spaces.
pub fn nick_key(nick: &str) -> String {
    fn fold(chars: impl Iterator<Item = char>) -> String {
        chars
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    }
    let once: String = skeleton(&fold(nick.nfkc())).collect();
    keyed(&once)
}

/// Case folding and the skeleton once more, blanks collapsed: the end of both keys.
fn keyed(once: &str) -> String {
    let folded: String = once
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    let key: String = skeleton(&folded).collect();
    key.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The second key under which nicknames are unique: the skeleton of the name *as shown*
/// (after NFKC), before case folding. Capitals of other scripts that look like Latin
/// capitals are confusables (Greek `ΑΝΑ`, Cyrillic `ТОМ` are `ANA`, `TOM`) while their
/// lower-case forms are not (`ανα`, `том`), so [`nick_key`], which folds first, keeps
/// them apart. Folding first is still needed for case variants that look different
/// (`ΣΟΦΊΑ`, `σοφία`): a name is taken if either key is.
pub fn nick_shown_key(nick: &str) -> String {
    let shown: String = skeleton(&nick.nfkc().collect::<String>()).collect();
    let once: String = skeleton(&keyed(&shown)).collect();
    keyed(&once)
}

/// Validate chat text as typed. Surrounding blank lines are dropped; everything else is kept.
pub fn validate_message(raw: &str) -> Result<String, MessageTextError> {
    let text = raw.trim_matches(|c: char| c == '\n' || c == '\r' || c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(MessageTextError::Empty);
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(MessageTextError::TooLong);
    }
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text.to_owned()
    };
    // Printable ASCII, newlines and tabs (most chat text) need no per-character look-up.
    let plain = |b: &u8| (b' '..=b'~').contains(b) || *b == b'\n' || *b == b'\t';
    if !text.as_bytes().iter().all(plain)
        && hidden_character(&text, |c| c == '\n' || c == '\t').is_some()
    {
        return Err(MessageTextError::InvisibleCharacters);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_rules() {
        assert_eq!(validate_nick("  ana  "), Ok("ana".into()));
        assert_eq!(validate_nick("Ana María"), Ok("Ana María".into()));
        assert_eq!(
            validate_nick("a|b:c\"<b>"),
            Ok("a|b:c\"<b>".into()),
            "punctuation is just text"
        );
        assert_eq!(validate_nick(""), Err(NickError::Empty));
        assert_eq!(validate_nick(" \t "), Err(NickError::Empty));
        assert_eq!(validate_nick(&"x".repeat(33)), Err(NickError::TooLong));
        assert_eq!(
            validate_nick(&"é".repeat(32)).map(|n| n.chars().count()),
            Ok(32)
        );
        assert_eq!(
            validate_nick("bob\u{200B}"),
            Err(NickError::InvisibleCharacters)
        );
        assert_eq!(
            validate_nick("bo\u{202E}b"),
            Err(NickError::InvisibleCharacters)
        );
        assert_eq!(
            validate_nick("bob\x1b[31m"),
            Err(NickError::InvisibleCharacters)
        );
        assert_eq!(validate_nick("bo\nb"), Err(NickError::InvisibleCharacters));
        assert_eq!(validate_nick("bo  b"), Err(NickError::BadWhitespace));
        assert_eq!(validate_nick("bo\u{00A0}b"), Err(NickError::BadWhitespace));
    }

    #[test]
    fn nicks_are_kept_as_typed_in_nfc() {
        assert_eq!(validate_nick("Jose\u{301}"), Ok("Jos\u{E9}".into()));
        assert_eq!(
            validate_nick("ＡＮＡ"),
            Ok("ＡＮＡ".into()),
            "NFKC only in the key"
        );
        assert_eq!(validate_nick("Ана"), Ok("Ана".into()), "one script is fine");
        assert_eq!(
            validate_nick("Иван Smith"),
            Ok("Иван Smith".into()),
            "per word"
        );
        assert_eq!(
            validate_nick("山田たろう"),
            Ok("山田たろう".into()),
            "Japanese mixes"
        );
        assert_eq!(
            validate_nick("Nguyễn"),
            Ok("Nguyễn".into()),
            "two marks in NFD"
        );
        assert_eq!(validate_nick("R2-D2"), Ok("R2-D2".into()));
    }

    #[test]
    fn look_alike_and_blank_nicks_are_refused() {
        let blank = "\u{2800}";
        assert_eq!(validate_nick(blank), Err(NickError::NoLetterOrDigit));
        assert_eq!(
            validate_nick(&blank.repeat(3)),
            Err(NickError::NoLetterOrDigit)
        );
        assert_eq!(validate_nick("ana\u{2800}"), Err(NickError::BadWhitespace));
        assert_eq!(
            validate_nick("ana\u{3000}bob"),
            Err(NickError::BadWhitespace)
        );
        assert_eq!(validate_nick("❤️"), Err(NickError::NoLetterOrDigit));
        assert_eq!(validate_nick("-_-"), Err(NickError::NoLetterOrDigit));
        assert_eq!(
            validate_nick("\u{301}\u{302}\u{303}"),
            Err(NickError::NoLetterOrDigit)
        );
        assert_eq!(
            validate_nick("\u{345}\u{345}"),
            Err(NickError::NoLetterOrDigit),
            "an alphabetic mark is no letter"
        );
        let zalgo: String = "a"
            .chars()
            .chain("\u{300}\u{301}\u{302}\u{303}\u{304}\u{305}".chars())
            .collect();
        assert_eq!(validate_nick(&zalgo), Err(NickError::StackedMarks));
        assert_eq!(
            validate_nick("a\u{301}\u{301}"),
            Err(NickError::StackedMarks)
        );
        assert_eq!(validate_nick("ana \u{301}"), Err(NickError::StackedMarks));
        assert_eq!(validate_nick("\u{301}ana"), Err(NickError::StackedMarks));
        assert_eq!(validate_nick("\u{0430}na"), Err(NickError::MixedScripts));
        assert_eq!(validate_nick("pay\u{0440}al"), Err(NickError::MixedScripts));
        // Default_Ignorable characters the hand-kept message list does not name.
        assert_eq!(
            validate_nick("an\u{1BCA0}a"),
            Err(NickError::InvisibleCharacters)
        );
        assert_eq!(
            validate_nick("ana\u{E0100}"),
            Err(NickError::InvisibleCharacters)
        );
    }

    /// Every fully-qualified emoji of the Unicode emoji test file, alone and in text, is a
    /// valid message and (where it fits) a valid nickname.
    #[test]
    fn every_fully_qualified_emoji_is_accepted() {
        for emoji in emoji_test_file() {
            assert_eq!(validate_message(&emoji), Ok(emoji.clone()), "{emoji:?}");
            let text = format!("te quiero {emoji} mucho{emoji}");
            assert_eq!(validate_message(&text), Ok(text.clone()), "{text:?}");
            let nick = format!("ana {emoji}");
            if nick.chars().count() <= MAX_NICK_CHARS {
                assert_eq!(validate_nick(&nick), Ok(nick.clone()), "{nick:?}");
            }
        }
    }

    /// The fully-qualified sequences of `emoji-test.txt` (Debian's `unicode-data`, which
    /// `make test` installs).
    pub(crate) fn emoji_test_file() -> Vec<String> {
        const PATH: &str = "/usr/share/unicode/emoji/emoji-test.txt";
        let file = std::fs::read_to_string(PATH).unwrap_or_else(|e| {
            panic!("{PATH}: {e}; install Debian's unicode-data (make deps-test does)")
        });
        let emoji: Vec<String> = file
            .lines()
            .filter(|l| l.contains("; fully-qualified"))
            .map(|l| {
                l.split(';')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(|hex| char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap())
                    .collect()
            })
            .collect();
        assert!(
            emoji.len() > 3000,
            "only {} sequences in {PATH}",
            emoji.len()
        );
        emoji
    }

    #[test]
    fn the_emoji_people_type_are_accepted_and_hidden_text_is_not() {
        for ok in [
            "❤️",
            "☺️",
            "✌️",
            "1️⃣",
            "🏳️‍🌈",
            "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
            "👩🏽‍💻",
            "🏴‍☠️",
            "te ❤️ mucho",
        ] {
            assert_eq!(validate_message(ok), Ok(ok.into()), "{ok:?}");
        }
        assert_eq!(validate_nick("ana ❤️"), Ok("ana ❤️".into()));
        for hidden in [
            "\u{FE0F}alone",     // a selector with nothing before it
            "a \u{FE0F}",        // after a space
            "x\u{FE0F}\u{FE0F}", // twice
            "\u{200D}joiner first",
            "joiner last\u{200D}",
            "a\u{200D} b",                   // before a space
            "hi\u{E0068}\u{E0069}\u{E007F}", // tags not after a black flag: hidden text
            "🏴\u{E0067}\u{E0062}",          // a flag's tags never cancelled
            "\u{E007F}",
        ] {
            assert_eq!(
                validate_message(hidden),
                Err(MessageTextError::InvisibleCharacters),
                "{hidden:?}"
            );
        }
        assert_eq!(
            validate_nick("ana\u{200D}"),
            Err(NickError::InvisibleCharacters)
        );
    }

    #[test]
    fn nick_keys_fold_case_and_look_alikes() {
        let ana = nick_key("ana");
        for same in [
            "Ana",
            "ANA",
            "\u{0430}na",               // Cyrillic а
            "\u{FF21}\u{FF2E}\u{FF21}", // full-width ＡＮＡ
            "ana\u{FE0F}",
        ] {
            assert_eq!(nick_key(same), ana, "{same:?}");
        }
        assert_eq!(
            nick_key("Jos\u{E9}"),
            nick_key("Jose\u{301}"),
            "NFC and NFD"
        );
        assert_eq!(nick_key("JOSÉ"), nick_key("josé"));
        assert_eq!(nick_key("a1ice"), nick_key("alice"), "1 looks like l");
        assert_eq!(nick_key("b0b"), nick_key("BOB"), "0 looks like O");
        assert_eq!(nick_key("straße"), nick_key("STRASSE"), "full case folding");
        assert_eq!(nick_key("ΣΟΦΊΑ"), nick_key("σοφία"));
        assert_eq!(
            nick_key("ana\u{2800}"),
            ana,
            "blanks do not make a new name"
        );
        assert_ne!(nick_key("ana maría"), nick_key("anamaría"));
        assert_ne!(
            nick_key("josé"),
            nick_key("jose"),
            "an accent is a visible difference"
        );

        assert_eq!(
            nick_key("ana❤️"),
            nick_key("ANA❤"),
            "selectors do not make a new name"
        );
        assert_eq!(nick_key(" Ana "), nick_key("aNA"));
        assert_eq!(nick_key("ÉLODIE"), nick_key("élodie"));
    }

    /// Names in capitals of another script that look the same as Latin capitals share
    /// their shown key (with each other and with the Latin name in any case).
    #[test]
    fn capitals_of_other_scripts_share_the_shown_key() {
        for (latin, other) in [
            ("ANA", "\u{391}\u{39D}\u{391}"),         // Greek ΑΝΑ
            ("TOM", "\u{422}\u{41E}\u{41C}"),         // Cyrillic ТОМ
            ("BEN", "\u{392}\u{395}\u{39D}"),         // Greek ΒΕΝ
            ("EBA", "\u{415}\u{412}\u{410}"),         // Cyrillic ЕВА
            ("KIKO", "\u{41A}\u{406}\u{41A}\u{41E}"), // Cyrillic КІКО
            ("HEKTOP", "\u{41D}\u{415}\u{41A}\u{422}\u{41E}\u{420}"), // Cyrillic НЕКТОР
        ] {
            assert_eq!(
                validate_nick(other).as_deref(),
                Ok(other),
                "one script: allowed"
            );
            assert_eq!(
                nick_shown_key(other),
                nick_shown_key(latin),
                "{other} looks like {latin}"
            );
            assert_eq!(
                nick_key(latin),
                nick_key(&latin.to_lowercase()),
                "case: the first key"
            );
        }
        // Lower case in those scripts looks different, and stays a different name.
        assert_ne!(
            nick_shown_key("\u{3B1}\u{3BD}\u{3B1}"),
            nick_shown_key("ana"),
            "Greek ανα"
        );
        assert_ne!(
            nick_shown_key("\u{412}\u{415}\u{41D}"),
            nick_shown_key("BEN"),
            "ВЕН is BEH"
        );
        assert_ne!(nick_shown_key("José"), nick_shown_key("Jose"));
        assert_eq!(nick_shown_key("JOSÉ"), nick_shown_key("jose\u{301}"));
        assert_ne!(nick_key("ana"), nick_key("ana2"));
    }

    #[test]
    fn message_rules() {
        assert_eq!(
            validate_message("hello | world: \"<b>x</b>\""),
            Ok("hello | world: \"<b>x</b>\"".into())
        );
        assert_eq!(
            validate_message("line one\r\nline two\n"),
            Ok("line one\nline two".into())
        );
        assert_eq!(
            validate_message("👩‍💻 emoji with joiner"),
            Ok("👩‍💻 emoji with joiner".into())
        );
        assert_eq!(validate_message("\n  \n"), Err(MessageTextError::Empty));
        assert_eq!(
            validate_message("a\x1b]0;pwned\x07"),
            Err(MessageTextError::InvisibleCharacters)
        );
        assert_eq!(
            validate_message("evil\u{202E}txt"),
            Err(MessageTextError::InvisibleCharacters)
        );
        assert_eq!(
            validate_message(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(MessageTextError::TooLong)
        );
        assert!(validate_message(&"x".repeat(MAX_MESSAGE_BYTES)).is_ok());
        // The plain-ASCII fast path and the character check agree at its edges.
        assert_eq!(validate_message("tab\there ~"), Ok("tab\there ~".into()));
        assert_eq!(
            validate_message("lone\rreturn"),
            Err(MessageTextError::InvisibleCharacters)
        );
        assert_eq!(
            validate_message("del\x7f"),
            Err(MessageTextError::InvisibleCharacters)
        );
        assert_eq!(validate_message("ñandú ok"), Ok("ñandú ok".into()));
    }
}
