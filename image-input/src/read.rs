//! Reading an image's bytes from the filesystem without ever blocking on something that is not
//! a regular file.
//!
//! A path is checked with `stat` before it is opened: a FIFO would block `open` until a writer
//! comes, a device may never end, a directory is not an image. Those are refused as
//! [`FailureKind::NotAFile`] without being opened. The file is then opened non-blocking (so a
//! FIFO swapped in after the check still cannot block) and checked again on its handle.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::decode::{FailureKind, ImageFailure};

/// What a non-regular file is, for messages.
pub fn file_type_name(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

fn not_a_file(meta: &Metadata) -> ImageFailure {
    ImageFailure::new(
        FailureKind::NotAFile,
        format!("{}, not a regular file: not read", file_type_name(meta)),
    )
}

fn io_failure(e: std::io::Error) -> ImageFailure {
    match e.kind() {
        std::io::ErrorKind::NotFound => ImageFailure::new(FailureKind::Missing, "file not found"),
        _ => ImageFailure::new(FailureKind::Unreadable, format!("cannot read: {e}")),
    }
}

/// Opens `path` for reading if it is a regular file (following symlinks).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), ImageFailure> {
    let meta = std::fs::metadata(path).map_err(io_failure)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_failure)?;
    let meta = file.metadata().map_err(io_failure)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta));
    }
    Ok((file, meta))
}

/// All bytes of the regular file at `path`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ImageFailure> {
    let (mut file, meta) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io_failure)?;
    Ok(bytes)
}

/// `len` bytes at `offset` of an open file (a tar member's data); safe to call from many
/// threads on one handle.
pub fn read_range(file: &File, offset: u64, len: u64) -> Result<Vec<u8>, ImageFailure> {
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, offset).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ImageFailure::new(
            FailureKind::Corrupt,
            format!("the archive ends inside this member ({len} bytes at {offset})"),
        ),
        _ => io_failure(e),
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once_and_a_directory_too() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.jpg");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let start = Instant::now();
        let err = read_file(&fifo).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "blocked on the FIFO");
        assert_eq!(err.kind, FailureKind::NotAFile);
        assert!(err.message.contains("FIFO"), "{}", err.message);
        let err = read_file(dir.path()).unwrap_err();
        assert_eq!((err.kind, err.message.contains("a directory")), (FailureKind::NotAFile, true));
        let err = read_file(&dir.path().join("missing.jpg")).unwrap_err();
        assert_eq!(err.kind, FailureKind::Missing);
        let err = read_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.kind, FailureKind::NotAFile, "a device that never ends is not read");
    }

    #[test]
    fn files_and_ranges_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_file(&p).unwrap(), b"0123456789");
        let f = File::open(&p).unwrap();
        assert_eq!(read_range(&f, 3, 4).unwrap(), b"3456");
        assert_eq!(read_range(&f, 8, 4).unwrap_err().kind, FailureKind::Corrupt);
    }
}
