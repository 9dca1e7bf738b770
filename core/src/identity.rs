//! The host's long-term identity (`docs/PROTOCOL.md` §3): its X25519 static key, the short
//! fingerprint people compare, and the pins a client keeps per room address.
//!
//! - [`HostKey`]: the server's secret, kept in a small text file
//!   (`tertulia-host-key-v1 <64 hex>\n`, mode 0600, never through a symbolic link).
//! - [`HostPublicKey`] and its [`Fingerprint`]: `SHA-256("tertulia host identity v2" ‖ 0x00 ‖
//!   public key)`, first 12 bytes, as `3f2a-91c0-5b7e-0d44-a1c9-77e2`.
//! - [`KnownHosts`]: `ADDRESS HEX-PUBLIC-KEY` lines, one per room address, written
//!   atomically; and [`check_host`], the pure pinning verdict.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// First word of a host key file.
pub const HOST_KEY_HEADER: &str = "tertulia-host-key-v1";
/// Domain separation of the fingerprint hash.
pub const FINGERPRINT_DOMAIN: &[u8] = b"tertulia host identity v2";
/// Bytes of the fingerprint (24 hex digits).
pub const FINGERPRINT_LEN: usize = 12;
/// Largest known-hosts file read or written.
pub const MAX_KNOWN_HOSTS_BYTES: u64 = 1024 * 1024;
/// Largest host key file read (the format needs 86 bytes).
const MAX_HOST_KEY_FILE: u64 = 4096;

/// Why a host key or known-hosts file could not be used.
#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is a symbolic link; refusing to follow it", path.display())]
    Symlink { path: PathBuf },
    #[error("the host key file {} is damaged ({why}); restore it from a backup, or delete it to give the room a new identity (members will be warned)", path.display())]
    DamagedHostKey { path: PathBuf, why: &'static str },
    #[error("the known-hosts file {} is damaged at line {line}: {why}", path.display())]
    DamagedKnownHosts {
        path: PathBuf,
        line: usize,
        why: &'static str,
    },
    #[error("{} is larger than {MAX_KNOWN_HOSTS_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The server's static X25519 secret. Wiped on drop; `Debug` shows `<secret>`.
#[derive(Clone)]
pub struct HostKey(StaticSecret);

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostKey(<secret>)")
    }
}

impl HostKey {
    /// A new random identity.
    pub fn generate() -> Self {
        Self(StaticSecret::random_from_rng(OsRng))
    }

    /// From fixed secret bytes: test vectors and tests.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    pub fn public(&self) -> HostPublicKey {
        HostPublicKey(PublicKey::from(&self.0).to_bytes())
    }

    /// The secret, for the handshake.
    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.0
    }

    /// Read the key at `path`, or create one there (mode 0600) if there is no file.
    /// A symbolic link, an unreadable or a damaged file is an error, never replaced.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(IdentityError::Symlink {
                path: path.to_path_buf(),
            }),
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let text = Zeroizing::new(format!(
                    "{HOST_KEY_HEADER} {}\n",
                    hex::encode(key.0.to_bytes())
                ));
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir).map_err(io_error(dir))?;
                }
                let mut file = match create_private(path) {
                    Ok(file) => file,
                    // Another process created it meanwhile: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load(path)
                    }
                    Err(e) => return Err(io_error(path)(e)),
                };
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_error(path))?;
                Ok(key)
            }
            Err(e) => Err(io_error(path)(e)),
        }
    }

    fn load(path: &Path) -> Result<Self, IdentityError> {
        let damaged = |why| IdentityError::DamagedHostKey {
            path: path.to_path_buf(),
            why,
        };
        let bytes = read_bounded(path, MAX_HOST_KEY_FILE)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| damaged("not text"))?;
        let text = Zeroizing::new(text.to_string());
        let mut words = text.split_whitespace();
        if words.next() != Some(HOST_KEY_HEADER) {
            return Err(damaged("it does not start with tertulia-host-key-v1"));
        }
        let hex_key = words.next().ok_or_else(|| damaged("no key"))?;
        if words.next().is_some() {
            return Err(damaged("unexpected text after the key"));
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key, &mut *secret)
            .map_err(|_| damaged("the key is not 64 hex digits"))?;
        Ok(Self(StaticSecret::from(*secret)))
    }
}

/// Create `dir` and its missing parents with mode 0700 (an existing one is left as it is).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Create a new file with mode 0600. `create_new` (`O_EXCL`) fails on anything already at
/// `path`, a symbolic link included (even a dangling one), so no link is ever followed.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Read at most `limit` bytes of a regular file (a symbolic link is refused).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, IdentityError> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).map_err(io_error(path))?;
    if meta.file_type().is_symlink() {
        return Err(IdentityError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > limit {
        return Err(IdentityError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(io_error(path))?;
    if bytes.len() as u64 > limit {
        return Err(IdentityError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// A host's public identity key, as presented in handshake message 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostPublicKey(pub [u8; 32]);

impl fmt::Debug for HostPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPublicKey({})", hex::encode(self.0))
    }
}

impl HostPublicKey {
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_DOMAIN);
        hasher.update([0u8]);
        hasher.update(self.0);
        let digest = hasher.finalize();
        let mut fp = [0u8; FINGERPRINT_LEN];
        fp.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Fingerprint(fp)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A host fingerprint: 12 bytes shown as 6 dash-separated groups of 4 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = hex::encode(self.0);
        for (i, group) in hex.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // Hex digits are ASCII.
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A text that is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a host fingerprint: expected 24 hex digits (dashes allowed), e.g. 3f2a-91c0-5b7e-0d44-a1c9-77e2")]
pub struct BadFingerprint;

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    /// 24 hex digits in any case, with or without dashes (anywhere between digits).
    fn from_str(text: &str) -> Result<Self, BadFingerprint> {
        let text = text.trim();
        if text.starts_with('-') || text.ends_with('-') || text.contains("--") {
            return Err(BadFingerprint);
        }
        let digits: String = text.chars().filter(|&c| c != '-').collect();
        if digits.len() != 2 * FINGERPRINT_LEN {
            return Err(BadFingerprint);
        }
        let mut fp = [0u8; FINGERPRINT_LEN];
        hex::decode_to_slice(&digits, &mut fp).map_err(|_| BadFingerprint)?;
        Ok(Fingerprint(fp))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The form an address is pinned under: trimmed, lower-cased (`Host:5555` is `host:5555`).
pub fn pin_address(addr: &str) -> String {
    addr.trim().to_ascii_lowercase()
}

/// Pinned host keys per room address; `path: None` keeps them in memory only.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    path: Option<PathBuf>,
    entries: BTreeMap<String, HostPublicKey>,
}

impl KnownHosts {
    /// Pins kept for this process only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Read the file at `path` (a missing file is an empty list; pins are written there).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let mut hosts = Self {
            path: Some(path.to_path_buf()),
            entries: BTreeMap::new(),
        };
        let bytes = match read_bounded(path, MAX_KNOWN_HOSTS_BYTES) {
            Ok(bytes) => bytes,
            Err(IdentityError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(hosts)
            }
            Err(e) => return Err(e),
        };
        let damaged = |line, why| IdentityError::DamagedKnownHosts {
            path: path.to_path_buf(),
            line,
            why,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| damaged(1, "not UTF-8 text"))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(addr), Some(key), None) = (words.next(), words.next(), words.next()) else {
                return Err(damaged(n + 1, "expected ADDRESS HEX-PUBLIC-KEY"));
            };
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(key, &mut bytes)
                .map_err(|_| damaged(n + 1, "the key is not 64 hex digits"))?;
            hosts
                .entries
                .insert(pin_address(addr), HostPublicKey(bytes));
        }
        Ok(hosts)
    }

    /// The key pinned for `addr`.
    pub fn pinned(&self, addr: &str) -> Option<HostPublicKey> {
        self.entries.get(&pin_address(addr)).copied()
    }

    /// Pin `key` for `addr` (replacing any previous pin) and save the file, if there is one.
    /// Other processes may pin in the same file (two `tertulia-chat`s, the app): under an
    /// advisory lock on `FILE.lock`, the file is read again, this pin merged in, and the
    /// result written to a temporary file beside it and renamed over it, so no one's pin is
    /// lost.
    pub fn pin(&mut self, addr: &str, key: HostPublicKey) -> Result<(), IdentityError> {
        let addr = pin_address(addr);
        if addr.is_empty() || addr.contains(char::is_whitespace) {
            return Ok(()); // not an address a line can hold; kept for nothing
        }
        let Some(path) = self.path.clone() else {
            self.entries.insert(addr, key);
            return Ok(());
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io_error(dir))?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        lock.lock().map_err(io_error(&lock_path))?;
        let mut current = Self::load(&path)?;
        let previous = current.entries.insert(addr, key);
        let saved = if previous == Some(key) {
            Ok(())
        } else {
            let mut text = String::from("# tertulia known hosts: ADDRESS HOST-PUBLIC-KEY\n");
            for (addr, key) in &current.entries {
                text.push_str(&format!("{addr} {}\n", key.to_hex()));
            }
            if text.len() as u64 > MAX_KNOWN_HOSTS_BYTES {
                Err(IdentityError::TooLarge { path: path.clone() })
            } else {
                save_atomically(&path, text.as_bytes())
            }
        };
        drop(lock); // releases the advisory lock
        saved?;
        self.entries = current.entries;
        Ok(())
    }
}

fn save_atomically(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(IdentityError::Symlink {
                path: path.to_path_buf(),
            });
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(io_error(dir))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let result = create_private(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}

/// What a client does with the identity a host presented in a completed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostVerdict {
    /// The identity is the expected or pinned one (`pin`: store it for the address — a
    /// first contact, or an explicitly expected identity replacing an old pin).
    Trusted { pin: bool },
    /// Not the identity this client trusts for the address: do not join, stop.
    Changed {
        pinned: Fingerprint,
        presented: Fingerprint,
    },
}

/// The pinning rule (pure):
/// 1. `accepted` — an identity the user accepted deliberately (`--accept-new-host`, the app's
///    "Trust the new identity"): if presented, it is trusted and pinned, replacing any pin;
/// 2. `expected` — an invite code's fingerprint: any other identity is refused;
/// 3. an existing pin must match — also when an invite code names the presented identity
///    (anyone holding the passphrase can write an invite code; only the user's deliberate
///    acceptance replaces a pin);
/// 4. else the key is pinned on first use.
pub fn check_host(
    presented: HostPublicKey,
    pinned: Option<HostPublicKey>,
    expected: Option<Fingerprint>,
    accepted: Option<Fingerprint>,
) -> HostVerdict {
    let shown = presented.fingerprint();
    if accepted == Some(shown) {
        return HostVerdict::Trusted {
            pin: pinned != Some(presented),
        };
    }
    if let Some(expected) = expected.filter(|expected| *expected != shown) {
        return HostVerdict::Changed {
            pinned: expected,
            presented: shown,
        };
    }
    match pinned {
        Some(pin) if pin == presented => HostVerdict::Trusted { pin: false },
        Some(pin) => HostVerdict::Changed {
            pinned: pin.fingerprint(),
            presented: shown,
        },
        None => HostVerdict::Trusted { pin: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format_and_parsing() {
        let key = HostKey::from_bytes([0x11; 32]).public();
        let fp = key.fingerprint();
        let shown = fp.to_string();
        assert_eq!(shown.len(), 29);
        assert_eq!(shown.matches('-').count(), 5);
        assert!(shown
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // The hash: SHA-256(domain ‖ 0 ‖ key), first 12 bytes.
        let digest = Sha256::digest([FINGERPRINT_DOMAIN, &[0], &key.0].concat());
        assert_eq!(fp.0, digest[..12]);
        assert_eq!(shown.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(shown.replace('-', "").parse::<Fingerprint>(), Ok(fp));
        assert_eq!(shown.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        for bad in [
            "",
            "3f2a",
            &shown[1..],
            &format!("{shown}0"),
            &format!("-{}", &shown[1..]),
            &shown.replacen('-', "--", 1),
            &shown.replace(&shown[..1], "g"),
        ] {
            assert_eq!(bad.parse::<Fingerprint>(), Err(BadFingerprint), "{bad}");
        }
        assert_ne!(HostKey::from_bytes([0x12; 32]).public().fingerprint(), fp);
    }

    #[test]
    fn host_key_file_is_created_private_reread_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("host.key");
        let first = HostKey::load_or_create(&path).unwrap();
        let again = HostKey::load_or_create(&path).unwrap();
        assert_eq!(first.public(), again.public());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("tertulia-host-key-v1 ") && text.ends_with('\n'));
        assert_eq!(text.len(), HOST_KEY_HEADER.len() + 1 + 64 + 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700, "a directory it creates is private");
        }
        assert_eq!(format!("{first:?}"), "HostKey(<secret>)");
        assert!(!format!("{first:?}").contains(&text[21..29]));

        for damaged in [
            "",
            "tertulia-host-key-v1 abc\n",
            "ssh-rsa AAAA\n",
            "\u{0}\u{ff}",
        ] {
            std::fs::write(&path, damaged).unwrap();
            let err = HostKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(err, IdentityError::DamagedHostKey { .. }),
                "{damaged:?}: {err}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged, "kept");
        }
        #[cfg(unix)]
        {
            let link = dir.path().join("link.key");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            assert!(matches!(
                HostKey::load_or_create(&link),
                Err(IdentityError::Symlink { .. })
            ));
            let dangling = dir.path().join("dangling.key");
            std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
            assert!(matches!(
                HostKey::load_or_create(&dangling),
                Err(IdentityError::Symlink { .. })
            ));
            assert!(!dir.path().join("nowhere").exists());
        }
    }

    #[test]
    fn known_hosts_round_trip_atomically_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut hosts = KnownHosts::load(&path).unwrap();
        assert_eq!(hosts.pinned("h:1"), None);
        let a = HostKey::from_bytes([1; 32]).public();
        let b = HostKey::from_bytes([2; 32]).public();
        hosts.pin("Host.LAN:5555", a).unwrap();
        hosts.pin("[fd00::2]:5555", b).unwrap();
        let reread = KnownHosts::load(&path).unwrap();
        assert_eq!(reread.pinned("host.lan:5555"), Some(a));
        assert_eq!(reread.pinned("HOST.lan:5555"), Some(a));
        assert_eq!(reread.pinned("[FD00::2]:5555"), Some(b));
        assert_eq!(reread.pinned("host.lan:5556"), None);
        hosts.pin("host.lan:5555", b).unwrap();
        assert_eq!(
            KnownHosts::load(&path).unwrap().pinned("host.lan:5555"),
            Some(b)
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
        assert!(leftovers.contains(&"known_hosts.lock".to_string()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        for (damaged, line) in [("h:1\n", 1), ("# c\nh:1 zz\n", 2), ("h:1 00 extra\n", 1)] {
            std::fs::write(&path, damaged).unwrap();
            match KnownHosts::load(&path) {
                Err(IdentityError::DamagedKnownHosts { line: at, .. }) => assert_eq!(at, line),
                other => panic!("{damaged:?}: {other:?}"),
            }
        }
        std::fs::write(&path, vec![b'#'; MAX_KNOWN_HOSTS_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            KnownHosts::load(&path),
            Err(IdentityError::TooLarge { .. })
        ));

        let mut memory = KnownHosts::in_memory();
        memory.pin("h:1", a).unwrap();
        assert_eq!(memory.pinned("h:1"), Some(a));
    }

    /// Two processes with the same file (two `tertulia-chat`s, or one and the app), each
    /// loaded before the other pinned: neither pin is lost.
    #[test]
    fn pins_from_two_holders_of_one_file_are_both_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let a = HostKey::from_bytes([1; 32]).public();
        let b = HostKey::from_bytes([2; 32]).public();
        let (mut first, mut second) = (
            KnownHosts::load(&path).unwrap(),
            KnownHosts::load(&path).unwrap(),
        );
        first.pin("one:1", a).unwrap();
        second.pin("two:2", b).unwrap();
        let both = KnownHosts::load(&path).unwrap();
        assert_eq!(both.pinned("one:1"), Some(a), "the first's pin survives");
        assert_eq!(both.pinned("two:2"), Some(b));
        assert_eq!(
            second.pinned("one:1"),
            Some(a),
            "the writer sees the merged list"
        );
    }

    #[test]
    fn pinning_verdicts() {
        let a = HostKey::from_bytes([1; 32]).public();
        let b = HostKey::from_bytes([2; 32]).public();
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        let changed = |pinned, presented| HostVerdict::Changed { pinned, presented };
        assert_eq!(
            check_host(a, None, None, None),
            HostVerdict::Trusted { pin: true }
        );
        assert_eq!(
            check_host(a, Some(a), None, None),
            HostVerdict::Trusted { pin: false }
        );
        assert_eq!(check_host(b, Some(a), None, None), changed(fa, fb));
        // An invite code's fingerprint: on first contact it is the only identity admitted
        // (no first-use window) and is pinned; it never replaces another pin.
        assert_eq!(
            check_host(b, None, Some(fb), None),
            HostVerdict::Trusted { pin: true }
        );
        assert_eq!(
            check_host(a, None, Some(fb), None),
            changed(fb, fa),
            "an invite's fingerprint leaves no first-use window"
        );
        assert_eq!(
            check_host(a, Some(a), Some(fa), None),
            HostVerdict::Trusted { pin: false }
        );
        assert_eq!(
            check_host(b, Some(a), Some(fb), None),
            changed(fa, fb),
            "an invite naming another identity than the pinned one does not replace the pin"
        );
        // Only the user's deliberate acceptance replaces a pin, and only with that identity.
        assert_eq!(
            check_host(b, Some(a), None, Some(fb)),
            HostVerdict::Trusted { pin: true }
        );
        assert_eq!(
            check_host(b, Some(a), Some(fa), Some(fb)),
            HostVerdict::Trusted { pin: true }
        );
        assert_eq!(check_host(a, Some(b), None, Some(fb)), changed(fb, fa));
        assert_eq!(
            check_host(b, Some(b), None, Some(fb)),
            HostVerdict::Trusted { pin: false }
        );
    }
}
