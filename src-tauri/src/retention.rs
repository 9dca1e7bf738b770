//! How much history the hosted room keeps, as the host may change it on the Host form:
//! at most N messages, and none older than N days. A field left out keeps the default
//! (`ServerConfig::default()`, [`defaults`]); out-of-range values are refused with a
//! message naming the field. Pure.

use serde::{Deserialize, Serialize};
use tertulia_core::server::{Retention, ServerConfig};

/// Most messages a host may ask to keep.
pub const MAX_MESSAGES: u64 = 10_000_000;
/// Most days a host may ask to keep history for (ten years).
pub const MAX_DAYS: u64 = 3650;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The host's choice (`{maxMessages?, maxDays?}`), or the defaults as the form shows them
/// (`null`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryChoice {
    pub max_messages: Option<u64>,
    pub max_days: Option<u64>,
}

/// The room's default retention, in the form's units (whole days, rounded up).
pub fn defaults() -> HistoryChoice {
    let retention = ServerConfig::default().room.retention;
    HistoryChoice {
        max_messages: retention.max_events,
        max_days: retention.max_age_ms.map(|ms| ms.div_ceil(DAY_MS)),
    }
}

/// `base` with the host's choices applied; `Err`: what to fix.
pub fn apply(base: Retention, choice: HistoryChoice) -> Result<Retention, String> {
    let mut retention = base;
    if let Some(n) = choice.max_messages {
        if !(1..=MAX_MESSAGES).contains(&n) {
            return Err(format!(
                "History: keep between 1 and {MAX_MESSAGES} messages"
            ));
        }
        retention.max_events = Some(n);
    }
    if let Some(days) = choice.max_days {
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(format!("History: keep it between 1 and {MAX_DAYS} days"));
        }
        retention.max_age_ms = Some(days * DAY_MS);
    }
    Ok(retention)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_keep_the_default_and_given_ones_replace_it() {
        let base = Retention {
            max_events: Some(100_000),
            max_age_ms: Some(365 * DAY_MS),
        };
        assert_eq!(apply(base, HistoryChoice::default()), Ok(base));
        let fewer = apply(
            base,
            HistoryChoice {
                max_messages: Some(500),
                max_days: None,
            },
        )
        .unwrap();
        assert_eq!(fewer.max_events, Some(500));
        assert_eq!(fewer.max_age_ms, base.max_age_ms);
        let week = apply(
            base,
            HistoryChoice {
                max_messages: None,
                max_days: Some(7),
            },
        )
        .unwrap();
        assert_eq!(week.max_age_ms, Some(7 * DAY_MS));
    }

    #[test]
    fn out_of_range_is_refused_naming_the_field() {
        for choice in [
            HistoryChoice {
                max_messages: Some(0),
                max_days: None,
            },
            HistoryChoice {
                max_messages: Some(MAX_MESSAGES + 1),
                max_days: None,
            },
            HistoryChoice {
                max_messages: None,
                max_days: Some(0),
            },
            HistoryChoice {
                max_messages: None,
                max_days: Some(u64::MAX),
            },
        ] {
            let e = apply(Retention::default(), choice).unwrap_err();
            assert!(e.starts_with("History:"), "{e}");
        }
    }

    #[test]
    fn the_window_gets_camel_case_and_unknown_fields_are_refused() {
        let choice: HistoryChoice = serde_json::from_str(r#"{"maxDays": 30}"#).unwrap();
        assert_eq!(choice.max_days, Some(30));
        assert!(serde_json::from_str::<HistoryChoice>(r#"{"maxAge": 30}"#).is_err());
        let shown = serde_json::to_value(defaults()).unwrap();
        assert!(shown.get("maxMessages").is_some() && shown.get("maxDays").is_some());
    }
}
