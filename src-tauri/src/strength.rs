//! How hard a room passphrase is to guess, for the host form's warning.
//!
//! Anyone who records one connection to the room can try passphrases offline, each guess
//! costing one Argon2id (19 MiB, t = 2) run: a few thousand per second on one GPU. zxcvbn's
//! estimate below 10^10 guesses (its score 4) falls within days of such guessing, so the
//! form warns below it, with zxcvbn's reason ([`Strength::reason`], a `snake_case` name the
//! window words in its language: ui/locales, `strength.<reason>`). Only a warning: the
//! host may still use the passphrase.

use serde::Serialize;
use zxcvbn::feedback::Warning;
use zxcvbn::Score;

/// The verdict on one passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Strength {
    /// Guessable within days offline: the form warns.
    pub weak: bool,
    /// Why, when weak: one of zxcvbn's warnings in `snake_case`, or `easy_to_guess`.
    pub reason: Option<&'static str>,
}

/// Judge `passphrase`; `context` are words a guesser would try first (the host's nickname).
pub fn judge(passphrase: &str, context: &[&str]) -> Strength {
    let estimate = zxcvbn::zxcvbn(passphrase.trim(), context);
    if estimate.score() >= Score::Four {
        return Strength {
            weak: false,
            reason: None,
        };
    }
    let reason = estimate
        .feedback()
        .and_then(|f| f.warning())
        .map_or("easy_to_guess", warning_name);
    Strength {
        weak: true,
        reason: Some(reason),
    }
}

fn warning_name(warning: Warning) -> &'static str {
    match warning {
        Warning::StraightRowsOfKeysAreEasyToGuess => "keyboard_row",
        Warning::ShortKeyboardPatternsAreEasyToGuess => "keyboard_pattern",
        Warning::RepeatsLikeAaaAreEasyToGuess => "repeated_character",
        Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess => "repeated_pattern",
        Warning::ThisIsATop10Password
        | Warning::ThisIsATop100Password
        | Warning::ThisIsACommonPassword => "common_password",
        Warning::ThisIsSimilarToACommonlyUsedPassword => "similar_to_common",
        Warning::SequencesLikeAbcAreEasyToGuess => "sequence",
        Warning::RecentYearsAreEasyToGuess => "recent_year",
        Warning::AWordByItselfIsEasyToGuess => "single_word",
        Warning::DatesAreOftenEasyToGuess => "date",
        Warning::NamesAndSurnamesByThemselvesAreEasyToGuess
        | Warning::CommonNamesAndSurnamesAreEasyToGuess => "name",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(passphrase: &str) -> Option<&'static str> {
        let verdict = judge(passphrase, &["ana"]);
        assert_eq!(verdict.weak, verdict.reason.is_some(), "{passphrase}");
        verdict.reason
    }

    #[test]
    fn generated_and_long_passphrases_are_not_weak() {
        for _ in 0..5 {
            let generated = tertulia_core::passphrase::generate();
            assert_eq!(reason(&generated), None, "{generated}");
        }
        assert_eq!(reason("desktop end to end passphrase"), None);
        assert_eq!(reason("tortuga azul come fresas los martes"), None);
    }

    #[test]
    fn weak_passphrases_are_told_why() {
        assert_eq!(reason("password"), Some("common_password"));
        assert!(reason("qwertyuiop").is_some(), "a keyboard row");
        assert_eq!(reason("aaaaaaaaaaaa"), Some("repeated_character"));
        assert_eq!(reason("abcdefgh"), Some("sequence"));
        assert!(reason("ana2024").is_some(), "the nickname and a year");
        assert!(reason("sesame").is_some());
        assert!(reason("12/05/1990").is_some());
    }

    #[test]
    fn the_reason_is_an_i18n_key_name() {
        for p in ["password", "qwerty", "abcabcabc", "2019", "marie", "x7"] {
            if let Some(r) = reason(p) {
                assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
            }
        }
    }
}
