//! The directory the host keeps files in (`DATA_DIR/files/`, `0700`; each file `0600`, named
//! by its file id in hex): one file per shared file holding its sealed `FileChunk` frames
//! (see [`layout`](super::layout)). Blocking I/O: called from blocking threads only.
//!
//! An in-memory room keeps its files in a private temporary directory, removed when the host
//! stops.

use std::fs::{File, OpenOptions};
#[cfg(not(unix))]
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::layout::{frame_at, FULL_FRAME};
use crate::cipher::Key;
use crate::files::{chunk_count, ChunkCipher, CHUNK_BYTES};

/// Name of the files directory inside the data directory.
pub const FILES_DIR: &str = "files";

/// The host's files directory.
#[derive(Debug)]
pub struct FileDir {
    path: PathBuf,
    /// Removed with everything in it when dropped (an in-memory room's).
    temporary: bool,
}

impl FileDir {
    /// `DATA_DIR/files` (created `0700` when the first file is stored in it).
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(FILES_DIR);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.is_dir() {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory; refusing to use it",
                    path.display()
                )));
            }
        }
        Ok(Self {
            path,
            temporary: false,
        })
    }

    /// A private temporary directory, removed when this is dropped.
    pub fn temporary() -> std::io::Result<Self> {
        let name = format!("tertulia-files-{:016x}", rand::random::<u64>());
        let path = std::env::temp_dir().join(name);
        create_private(&path)?;
        Ok(Self {
            path,
            temporary: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where file `file_id` is kept.
    pub fn file_path(&self, file_id: u64) -> PathBuf {
        self.path.join(format!("{file_id:016x}"))
    }

    /// Create the directory (`0700`) if it is not there yet (and make its entry in the data
    /// directory durable).
    pub fn ensure(&self) -> std::io::Result<()> {
        if self.path.is_dir() {
            return Ok(());
        }
        create_private(&self.path)?;
        match self.path.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }

    /// The ids of the files in the directory, and the paths of anything else in it.
    pub fn list(&self) -> std::io::Result<(Vec<u64>, Vec<PathBuf>)> {
        let (mut ids, mut other) = (Vec::new(), Vec::new());
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ids, other)),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let id = name
                .to_str()
                .filter(|n| n.len() == 16)
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            match id {
                Some(id) if entry.file_type()?.is_file() => ids.push(id),
                _ => other.push(entry.path()),
            }
        }
        Ok((ids, other))
    }
}

impl Drop for FileDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Create `path` readable by its owner only (an existing one is left as it is).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Make the entries of directory `path` durable (the names created, renamed or removed in
/// it): `fsync` on the directory itself. A no-op where directories cannot be opened so
/// (Windows, where the file system orders this itself).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(path)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Open (creating it `0600` if missing) the stored file of an upload, cut to `keep` bytes
/// (what whole frames it holds). A stored file that is a symbolic link or not a regular file
/// is refused, never followed. A file created here has its directory entry made durable
/// before it is returned: the finished file the database will name is then on disk under its
/// name after a crash, once its content has been fsynced ([`verify`]).
pub fn open_for_upload(path: &Path, keep: u64) -> std::io::Result<File> {
    refuse_links(path)?;
    let created = std::fs::symlink_metadata(path).is_err();
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    file.set_len(keep)?;
    if created {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(file)
}

/// An error if `path` is there and is not a regular file (a symbolic link included).
fn refuse_links(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err(std::io::Error::other(format!(
            "{} is a symbolic link or not a regular file; refusing to use it",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The length of the stored file at `path` (0 if missing).
pub fn stored_len_of(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

/// Open a finished file for serving.
pub fn open_for_reading(path: &Path) -> std::io::Result<File> {
    refuse_links(path)?;
    OpenOptions::new().read(true).open(path)
}

/// Read the frame of the chunk at content `offset` of a file of `size` bytes into `buf`.
pub fn read_frame(file: &File, size: u64, offset: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let (at, len) = frame_at(size, offset);
    buf.resize(len, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, at)
    }
    #[cfg(not(unix))]
    {
        let mut file = file;
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(buf)
    }
}

/// Read the frames of up to `max` chunks from content `offset` on (they lie one after
/// another) into `buf`, in one read; returns the content offset after them.
pub fn read_frames(
    file: &File,
    size: u64,
    offset: u64,
    max: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<u64> {
    let end = offset
        .saturating_add(max.saturating_mul(CHUNK_BYTES))
        .min(size);
    let (start, _) = frame_at(size, offset);
    let stop = if end >= size {
        super::layout::stored_len(size)
    } else {
        frame_at(size, end).0
    };
    buf.resize(stop.saturating_sub(start) as usize, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, start)?;
    }
    #[cfg(not(unix))]
    {
        let mut file = file;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(buf)?;
    }
    Ok(end)
}

/// Write the sealed frame of the chunk at content `offset` in its place (positioned, so a
/// write repeated by a replaced connection lands on the same bytes).
pub fn write_frame(file: &File, size: u64, offset: u64, frame: &[u8]) -> std::io::Result<()> {
    let (at, _) = frame_at(size, offset);
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(frame, at)
    }
    #[cfg(not(unix))]
    {
        let mut file = file;
        file.seek(SeekFrom::Start(at))?;
        file.write_all(frame)
    }
}

/// Why a finished upload is not the file it was announced as.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading the stored file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a stored chunk does not open under its file key")]
    Sealed,
    #[error("the content's SHA-256 is not the announced one")]
    Mismatch,
}

/// Make a finished upload durable (fsync) and check that its content has the announced
/// SHA-256: `hashed`, the digest of what was sealed as it arrived, or else (an upload resumed
/// part-way) the content of its frames read back a frame at a time. Blocking: run it on a
/// blocking thread.
pub fn verify(
    file: &File,
    key: &Key,
    file_id: u64,
    size: u64,
    sha256: &[u8; 32],
    hashed: Option<[u8; 32]>,
) -> Result<(), VerifyError> {
    file.sync_all()?;
    if let Some(digest) = hashed {
        return if &digest == sha256 {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        };
    }
    let cipher = ChunkCipher::new(key, file_id);
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(FULL_FRAME as usize);
    for index in 0..chunk_count(size) {
        let offset = index * CHUNK_BYTES;
        read_frame(file, size, offset, &mut buf)?;
        let content = cipher
            .open(offset, &buf[crate::frame::HEADER_LEN..])
            .map_err(|_| VerifyError::Sealed)?;
        hasher.update(&content);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if &digest == sha256 {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Remove a stored file; one already gone is fine.
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a stored file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_written_are_read_back_and_verified_and_a_cut_file_is_refused() {
        let dir = FileDir::temporary().unwrap();
        let key = [7u8; 32];
        let content: Vec<u8> = (0..(2 * CHUNK_BYTES + 100)).map(|i| i as u8).collect();
        let size = content.len() as u64;
        let path = dir.file_path(42);
        let file = open_for_upload(&path, 0).unwrap();
        let cipher = ChunkCipher::new(&key, 42);
        for (i, chunk) in content.chunks(CHUNK_BYTES as usize).enumerate() {
            let offset = i as u64 * CHUNK_BYTES;
            let frame = cipher.seal(offset, chunk).unwrap();
            write_frame(&file, size, offset, &frame).unwrap();
        }
        let digest: [u8; 32] = Sha256::digest(&content).into();
        verify(&file, &key, 42, size, &digest, None).unwrap();
        assert!(matches!(
            verify(&file, &key, 42, size, &[0; 32], None),
            Err(VerifyError::Mismatch)
        ));
        verify(&file, &key, 42, size, &digest, Some(digest)).unwrap();
        assert!(matches!(
            verify(&file, &key, 42, size, &digest, Some([1; 32])),
            Err(VerifyError::Mismatch)
        ));
        // A frame that does not open under the key is found reading back.
        assert!(matches!(
            verify(&file, &[8; 32], 42, size, &digest, None),
            Err(VerifyError::Sealed)
        ));
        let mut buf = Vec::new();
        read_frame(&file, size, CHUNK_BYTES, &mut buf).unwrap();
        let opened = cipher
            .open(CHUNK_BYTES, &buf[crate::frame::HEADER_LEN..])
            .unwrap();
        assert_eq!(
            opened,
            &content[CHUNK_BYTES as usize..2 * CHUNK_BYTES as usize]
        );
        assert_eq!(dir.list().unwrap().0, vec![42]);
        // Several frames in one read: the second and the short last one, whole.
        let next = read_frames(&file, size, CHUNK_BYTES, 4, &mut buf).unwrap();
        assert_eq!(next, size);
        let (frame, used) = crate::frame::decode(&buf, crate::frame::MAX_BODY)
            .unwrap()
            .unwrap();
        assert_eq!(cipher.open(CHUNK_BYTES, frame.body).unwrap(), opened);
        let (last, rest) = crate::frame::decode(&buf[used..], crate::frame::MAX_BODY)
            .unwrap()
            .unwrap();
        assert_eq!(rest, buf.len() - used);
        assert_eq!(
            cipher.open(2 * CHUNK_BYTES, last.body).unwrap(),
            &content[2 * CHUNK_BYTES as usize..]
        );
        assert_eq!(
            read_frames(&file, size, 0, 1, &mut buf).unwrap(),
            CHUNK_BYTES
        );
        assert_eq!(buf.len() as u64, FULL_FRAME);
        // Reopened for resuming, cut to its first frame.
        drop(file);
        let file = open_for_upload(&path, FULL_FRAME).unwrap();
        assert_eq!(file.metadata().unwrap().len(), FULL_FRAME);
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists(), "a temporary directory is removed");
    }
}
