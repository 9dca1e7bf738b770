//! Server addresses as users type them: host-name validation and `host:port` joining.

use std::net::IpAddr;

/// Is `host` an IP address or a syntactically valid DNS host name (without brackets)?
pub fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && (host.parse::<IpAddr>().is_ok()
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

/// `host:port`, with brackets around IPv6 addresses.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in [
            "127.0.0.1",
            "::1",
            "chat.example.org",
            "host-1",
            "localhost",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in ["", "bad host", "a..b", "x_y.org", &"a".repeat(64)] {
            assert!(!is_valid_host(bad), "{bad}");
        }
        assert_eq!(join_host_port("::1", 5), "[::1]:5");
        assert_eq!(join_host_port("h", 5), "h:5");
    }
}
