//! Links from messages, opened in the system browser — after the window has asked the user
//! (ui/opener.js). Peer text is untrusted, so the URL is checked again here, whatever the
//! window sent: only a plain `http`/`https` URL with a host, no user name or password before
//! the host, no whitespace or control characters that a parser would quietly drop. What is
//! opened is the URL as the WHATWG parser writes it, the same form the window showed.

use tauri::{AppHandle, Runtime};
use tauri_plugin_opener::OpenerExt;
use thiserror::Error;
use url::Url;

/// Whether `url` is one of the app's own pages (the bundled `ui/`, served as
/// `tauri://localhost` on Linux and macOS, `http(s)://tauri.localhost` on Windows and Android).
pub fn is_app_page(url: &Url) -> bool {
    match url.scheme() {
        "tauri" => url.host_str() == Some("localhost"),
        "http" | "https" => url.host_str() == Some("tauri.localhost"),
        _ => false,
    }
}

/// The window never leaves the app's own pages: whatever a peer's link, a context menu's
/// "Open Link", a dropped URL or a script tries, a navigation elsewhere is cancelled (links
/// open only in the system browser, through [`open_link`], after the user was asked).
pub fn navigation_guard<R: Runtime>() -> tauri::plugin::TauriPlugin<R> {
    tauri::plugin::Builder::new("navigation-guard")
        .on_navigation(|_webview, url| {
            let allowed = is_app_page(url);
            if !allowed {
                tracing::warn!(%url, "navigation away from the app refused");
            }
            allowed
        })
        .build()
}

/// Longer than any message may be: nothing legitimate is refused.
const MAX_URL_LEN: usize = 8192;

/// Why a link is not opened.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("only http and https links are opened")]
    Scheme,
    #[error("the link is not a valid web address")]
    Invalid,
    #[error("the link contains spaces or invisible characters")]
    Hidden,
    #[error("links with a user name or password before the host are not opened")]
    Credentials,
    #[error("the link is too long")]
    TooLong,
}

/// The URL to open for `raw`, or why not.
pub fn checked_link(raw: &str) -> Result<Url, LinkError> {
    if raw.len() > MAX_URL_LEN {
        return Err(LinkError::TooLong);
    }
    // The WHATWG parser strips leading and trailing spaces and controls and every tab and
    // newline anywhere ("java\nscript:" reads as "javascript:"): refuse them instead.
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    {
        return Err(LinkError::Hidden);
    }
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(LinkError::Scheme);
    }
    let url = Url::parse(raw).map_err(|_| LinkError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LinkError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(LinkError::Credentials);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(LinkError::Invalid);
    }
    Ok(url)
}

/// Format characters that draw nothing (zero-width spaces and joiners, bidi controls, BOM).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Opens a link from a message in the system browser, once the user confirmed it in the
/// window; refuses anything but a plain http(s) URL ([`checked_link`]).
#[tauri::command]
pub fn open_link<R: Runtime>(app: AppHandle<R>, url: String) -> Result<(), OpenError> {
    let url = checked_link(&url)?;
    tracing::info!(%url, "opening a link in the system browser");
    app.opener()
        .open_url(url.as_str(), None::<&str>)
        .map_err(|e| OpenError::Browser(e.to_string()))
}

/// Why `open_link` did not open a link; sent to the window as `{"kind", "message"}` like the
/// other commands' errors (`link_<reason>` or `browser_failed`), worded there in its language.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Refused(#[from] LinkError),
    #[error("the browser could not be started: {0}")]
    Browser(String),
}

impl serde::Serialize for OpenError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let kind = match self {
            Self::Refused(LinkError::Scheme) => "link_scheme",
            Self::Refused(LinkError::Invalid) => "link_invalid",
            Self::Refused(LinkError::Hidden) => "link_hidden",
            Self::Refused(LinkError::Credentials) => "link_credentials",
            Self::Refused(LinkError::TooLong) => "link_too_long",
            Self::Browser(_) => "browser_failed",
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("kind", kind)?;
        map.serialize_entry("message", &self.to_string())?;
        if let Self::Browser(detail) = self {
            map.serialize_entry("detail", detail)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_link_reaches_the_window_by_kind() {
        let refused = OpenError::from(checked_link("javascript:alert(1)").unwrap_err());
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            serde_json::json!({ "kind": "link_scheme", "message": "only http and https links are opened" })
        );
        let browser = serde_json::to_value(OpenError::Browser("no xdg-open".into())).unwrap();
        assert_eq!(browser["kind"], "browser_failed");
        assert_eq!(browser["detail"], "no xdg-open");
    }

    #[test]
    fn only_the_apps_own_pages_may_be_shown_in_the_window() {
        for ok in [
            "tauri://localhost/",
            "tauri://localhost/index.html#x",
            "http://tauri.localhost/",
            "https://tauri.localhost/index.html",
        ] {
            assert!(is_app_page(&Url::parse(ok).unwrap()), "{ok}");
        }
        for bad in [
            "https://example.com/",
            "http://localhost:1430/",
            "tauri://evil/",
            "file:///etc/passwd",
            "https://tauri.localhost.evil.com/",
            "data:text/html,hi",
            "about:blank",
        ] {
            assert!(!is_app_page(&Url::parse(bad).unwrap()), "{bad}");
        }
    }

    #[test]
    fn plain_http_and_https_urls_are_opened_in_normal_form() {
        let ok = |raw: &str| checked_link(raw).map(|u| u.to_string());
        assert_eq!(
            ok("https://example.org/tertulia?q=1&lang=es#abajo"),
            Ok("https://example.org/tertulia?q=1&lang=es#abajo".into())
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/a"),
            Ok("http://127.0.0.1:8080/a".into())
        );
        assert_eq!(ok("HTTPS://EXAMPLE.ORG"), Ok("https://example.org/".into()));
        assert_eq!(ok("https://[::1]/"), Ok("https://[::1]/".into()));
        assert_eq!(
            ok("https://münchen.example/straße"),
            Ok("https://xn--mnchen-3ya.example/stra%C3%9Fe".into()),
            "the host as it is looked up, as the window showed it"
        );
    }

    #[test]
    fn no_other_scheme_is_ever_opened() {
        for raw in [
            "javascript:alert(1)",
            "JavaScript://example.org/%0aalert(1)",
            "file:///etc/passwd",
            "ftp://example.org/",
            "data:text/html,<script>alert(1)</script>",
            "mailto:ana@example.org",
            "tertulia://127.0.0.1:5555#secret",
            "vbscript:msgbox",
            "/etc/passwd",
            "example.org",
            "",
        ] {
            assert_eq!(checked_link(raw), Err(LinkError::Scheme), "{raw:?}");
        }
    }

    #[test]
    fn no_credentials_trickery() {
        for raw in [
            "https://bank.example@evil.example/login",
            "https://user:pass@example.org/",
            "http://:pw@example.org/",
        ] {
            assert_eq!(checked_link(raw), Err(LinkError::Credentials), "{raw:?}");
        }
    }

    #[test]
    fn what_a_parser_would_drop_is_refused() {
        for raw in [
            " https://example.org/",
            "https://example.org/\n",
            "java\nscript:alert(1)",
            "ht\ttps://example.org/",
            "https://exa\u{200b}mple.org/",
            "https://example.org/\u{202e}gpj.exe",
            "https://example.org/a b",
            "https://example.org/\u{0}",
        ] {
            assert_eq!(checked_link(raw), Err(LinkError::Hidden), "{raw:?}");
        }
    }

    #[test]
    fn broken_or_hostless_or_huge_urls_are_refused() {
        assert_eq!(checked_link("https://"), Err(LinkError::Invalid));
        assert_eq!(checked_link("http://exa mple"), Err(LinkError::Hidden));
        assert_eq!(checked_link("https://[::1/"), Err(LinkError::Invalid));
        let huge = format!("https://example.org/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(checked_link(&huge), Err(LinkError::TooLong));
    }
}
