//! Secrets held in memory (passphrase, pre-shared key, room key): wiped when dropped and
//! shown as `<secret>` in `Debug` output, so a log line or a panic message never carries one.

use std::fmt;
use std::ops::Deref;

use zeroize::{Zeroize, Zeroizing};

use crate::cipher::Key;

/// A value that is zeroed when dropped and never printed. Reads go through `Deref`.
#[derive(Clone)]
pub struct Secret<T: Zeroize + Clone>(Zeroizing<T>);

/// A symmetric key (pre-shared key, room broadcast key).
pub type SecretKey = Secret<Key>;
/// A passphrase.
pub type SecretString = Secret<String>;

impl<T: Zeroize + Clone> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(Zeroizing::new(value))
    }
}

impl<T: Zeroize + Clone> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: Zeroize + Clone> Deref for Secret<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize + Clone> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_readable_but_never_printed() {
        let key = SecretKey::new([0xAB; 32]);
        assert_eq!(key[0], 0xAB);
        assert_eq!(format!("{key:?}"), "<secret>");
        let pass = SecretString::new("correct horse".into());
        assert_eq!(&**pass, "correct horse");
        assert!(!format!("{pass:?} {:?}", pass.clone()).contains("horse"));
    }

    /// `Debug` of everything that holds a passphrase or a key: the secret's bytes appear in
    /// no form (hex, decimal list, text).
    #[test]
    fn no_struct_holding_a_secret_prints_it() {
        use crate::cipher::CipherState;
        use crate::client::ClientConfig;
        use crate::handshake::{client_start, server_respond};
        use crate::identity::HostKey;

        let psk: Key = [0x5A; 32];
        let room_key: Key = [0x9C; 32];
        let host_secret = [0x3B; 32];
        let passphrase = "correct horse battery staple";
        let forms = |key: &Key| [hex::encode(&key[..4]), format!("{}, {}", key[0], key[1])];
        let host = HostKey::from_bytes(host_secret);
        let (waiting, init) = client_start(&psk, b"hello").expect("init");
        let mut shown = vec![format!("{waiting:?}"), format!("{host:?}")];
        let (server, response) = server_respond(&psk, &host, b"hello", &init).expect("response");
        let client = waiting.read_response(&response).expect("done").keys;
        shown.extend([
            format!("{:?}", CipherState::new(&psk)),
            format!("{:?}", SecretKey::new(psk)),
            format!("{:?}", SecretKey::new(room_key)),
            format!("{:?}", ClientConfig::new("h:1", "ana", passphrase)),
        ]);
        for text in &shown {
            for form in forms(&psk)
                .iter()
                .chain(&forms(&room_key))
                .chain(&forms(&host_secret))
            {
                assert!(!text.contains(form.as_str()), "{form} in {text}");
            }
            assert!(!text.contains("horse"), "the passphrase in {text}");
        }
        // Session keys are unknown here: what the transports show must not depend on them
        // beyond the public handshake hash.
        let public = |keys: &crate::handshake::TransportKeys| {
            format!("{keys:?}").replace(&hex::encode(keys.handshake_hash), "h")
        };
        assert_eq!(public(&client), public(&server));
        assert!(
            !format!("{client:?}").contains('['),
            "no byte lists: {client:?}"
        );
    }
}
