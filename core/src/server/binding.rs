//! A stored room is bound to its passphrase. The room database keeps a **verifier** derived
//! from the room's pre-shared key (`HKDF-SHA256(ikm = psk, info = "tertulia v1 room
//! verifier")`: never the passphrase, never the key itself, and useless for joining the
//! room). A server started with a different passphrase derives a different verifier, so it
//! is not the same room: the host decides ([`PreviousRoom`](super::PreviousRoom)) whether to
//! refuse, to set the previous room's files aside in the data directory, or to delete them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hkdf::Hkdf;
use sha2::Sha256;

use super::store::DB_FILE;
use crate::cipher::Key;

/// What the room database stores to recognise its passphrase.
pub type Verifier = [u8; 32];

/// HKDF `info` of the verifier: distinct from every other use of the key.
const VERIFIER_INFO: &[u8] = b"tertulia v1 room verifier";

/// Folder inside the data directory where [`set_aside`] keeps previous rooms.
pub const PREVIOUS_ROOMS_DIR: &str = "previous-rooms";

/// The verifier of the room whose pre-shared key is `psk`.
pub fn verifier(psk: &Key) -> Verifier {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8 160-byte limit: expanding cannot fail.
    let _ = Hkdf::<Sha256>::new(None, psk).expand(VERIFIER_INFO, &mut out);
    out
}

/// Whether a stored verifier is the one of `psk` (compared in constant time).
pub fn matches(stored: &[u8], psk: &Key) -> bool {
    let expected = verifier(psk);
    stored.len() == expected.len()
        && stored
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The room database's files (its WAL and shared-memory index, a rollback journal, the
/// database itself: last, so a move interrupted part-way never leaves a WAL or journal
/// without its database, to be applied to a new one) that exist in `dir`.
fn room_files(dir: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal", ""]
        .iter()
        .map(|suffix| dir.join(format!("{DB_FILE}{suffix}")))
        .filter(|path| path.exists())
        .collect()
}

/// Move the room's files (closed, and its shared files) to `dir/previous-rooms/<UTC time>/`;
/// returns that folder.
pub fn set_aside(dir: &Path, now: SystemTime) -> std::io::Result<PathBuf> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let parent = dir.join(PREVIOUS_ROOMS_DIR);
    let stamp = utc_stamp(secs);
    let mut target = parent.join(&stamp);
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = parent.join(format!("{stamp}-{n}"));
    }
    create_private_dir(&target)?;
    // The shared files go with their room (first: the database, last, marks a whole move).
    let files = dir.join(super::files::file_store::FILES_DIR);
    if files.is_dir() {
        std::fs::rename(&files, target.join(super::files::file_store::FILES_DIR))?;
    }
    for file in room_files(dir) {
        if let Some(name) = file.file_name() {
            std::fs::rename(&file, target.join(name))?;
        }
    }
    Ok(target)
}

/// Delete the room's files (closed), its shared files included.
pub fn delete(dir: &Path) -> std::io::Result<()> {
    let files = dir.join(super::files::file_store::FILES_DIR);
    if files.is_dir() {
        std::fs::remove_dir_all(&files)?;
    }
    for file in room_files(dir) {
        std::fs::remove_file(file)?;
    }
    Ok(())
}

/// Create `dir` (and missing parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// `YYYYMMDDTHHMMSSZ` for a time in seconds since 1970 (UTC).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_tells_keys_apart_and_is_not_the_key() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert!(matches(&verifier(&a), &a));
        assert!(!matches(&verifier(&a), &b));
        assert!(!matches(&verifier(&a)[..31], &a));
        assert_ne!(verifier(&a), a);
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_764_706_245), "20251202T201045Z");
    }

    #[test]
    fn set_aside_moves_the_room_files_only() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        std::fs::write(dir.join(DB_FILE), b"db").unwrap();
        std::fs::write(dir.join(format!("{DB_FILE}-wal")), b"wal").unwrap();
        std::fs::write(dir.join("other.txt"), b"not ours").unwrap();
        std::fs::create_dir(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/0000000000000001"), b"a shared file").unwrap();
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_764_706_245);
        let first = set_aside(dir, at).unwrap();
        assert_eq!(first, dir.join("previous-rooms/20251202T201045Z"));
        assert_eq!(std::fs::read(first.join(DB_FILE)).unwrap(), b"db");
        assert_eq!(
            std::fs::read(first.join(format!("{DB_FILE}-wal"))).unwrap(),
            b"wal"
        );
        assert!(!dir.join(DB_FILE).exists());
        assert!(dir.join("other.txt").exists());
        assert_eq!(
            std::fs::read(first.join("files/0000000000000001")).unwrap(),
            b"a shared file",
            "shared files go with their room"
        );
        assert!(!dir.join("files").exists());
        assert_eq!(
            room_files(first.as_path()).last(),
            Some(&first.join(DB_FILE)),
            "the database moves last"
        );
        std::fs::write(dir.join(DB_FILE), b"db2").unwrap();
        let second = set_aside(dir, at).unwrap();
        assert_eq!(second, dir.join("previous-rooms/20251202T201045Z-2"));
        std::fs::write(dir.join(DB_FILE), b"db3").unwrap();
        std::fs::create_dir(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/0000000000000002"), b"x").unwrap();
        delete(dir).unwrap();
        assert!(!dir.join(DB_FILE).exists());
        assert!(!dir.join("files").exists(), "deleted with the room");
        assert!(second.join(DB_FILE).exists());
    }
}
