//! Loose files: a directory tree, or a manifest table of ids and paths.
//!
//! A directory is walked in name order, recursively, following symbolic links (datasets use
//! them for second categories: each link to a file is an image of its own, with its own id)
//! but entering each directory once, so a link loop can neither repeat files under new ids nor
//! run forever. Hidden entries are skipped. The id is the path relative to the root with `/`
//! separators; entries are listed sorted by id. Entries that are no regular file (FIFOs, sockets, devices) are rejected as
//! `not-a-file` without being opened; names that are not UTF-8 as `bad-name`, with an id that
//! spells invalid bytes as `\xHH`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use feature_cache::manifest::read_manifest;
use feature_cache::{Origin, Shard};

use crate::catalog::{extension_of, unique_rejected_ids, CatalogEntry, Locator, Rejected};
use crate::decode::{FailureKind, ImageFailure};
use crate::error::{InputError, Result};
use crate::read::file_type_name;

/// Entries and rejected items of loose files.
pub(crate) struct Listed {
    pub entries: Vec<CatalogEntry>,
    pub rejected: Vec<Rejected>,
}

fn file_entry(id: String, path: PathBuf) -> CatalogEntry {
    let extension = extension_of(&id).or_else(|| path.to_str().and_then(extension_of));
    CatalogEntry { id, origin: Origin::File(path), extension, locator: Locator::File }
}

/// Every image below `root`, in this process's `shard` (by a hash of the id).
pub(crate) fn walk(root: &Path, shard: Shard) -> Result<Listed> {
    let mut out = Listed { entries: Vec::new(), rejected: Vec::new() };
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    let root_meta = std::fs::metadata(root).map_err(|e| InputError::io(root, e))?;
    visited.insert((root_meta.dev(), root_meta.ino()));
    // (directory, its id prefix), depth first in name order
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut children: Vec<(std::ffi::OsString, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|e| InputError::io(&dir, e))?
            .map(|e| e.map(|e| (e.file_name(), e.path())))
            .collect::<std::io::Result<_>>()
            .map_err(|e| InputError::io(&dir, e))?;
        children.sort();
        let mut subdirs = Vec::new();
        for (name, path) in children {
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            let id = match name.to_str() {
                Some(n) => Ok(format!("{prefix}{n}")),
                None => Err(format!("{prefix}{}", escape_name(&name))),
            };
            // metadata follows symlinks; a broken link is listed and fails as `missing`
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    if visited.insert((m.dev(), m.ino())) {
                        match id {
                            Ok(id) => subdirs.push((path, format!("{id}/"))),
                            Err(id) => out.rejected.push(Rejected {
                                id,
                                origin: Some(Origin::File(path)),
                                failure: ImageFailure::new(
                                    FailureKind::BadName,
                                    "directory name is not UTF-8: its files were not listed",
                                ),
                            }),
                        }
                    }
                }
                Ok(m) if !m.is_file() => {
                    let id = id.unwrap_or_else(|id| id);
                    if shard.contains_id(&id) {
                        out.rejected.push(Rejected {
                            id,
                            origin: Some(Origin::File(path)),
                            failure: ImageFailure::new(
                                FailureKind::NotAFile,
                                format!("{}, not a regular file: not read", file_type_name(&m)),
                            ),
                        });
                    }
                }
                _ => match id {
                    Ok(id) if shard.contains_id(&id) => out.entries.push(file_entry(id, path)),
                    Ok(_) => {}
                    Err(id) if shard.contains_id(&id) => out.rejected.push(Rejected {
                        id,
                        origin: Some(Origin::File(path)),
                        failure: ImageFailure::new(FailureKind::BadName, "file name is not UTF-8"),
                    }),
                    Err(_) => {}
                },
            }
        }
        // pushed in reverse so that the first subdirectory is walked first
        stack.extend(subdirs.into_iter().rev());
    }
    out.entries.sort_by(|a, b| a.id.cmp(&b.id));
    out.rejected.sort_by(|a, b| a.id.cmp(&b.id));
    unique_rejected_ids(&out.entries, &mut out.rejected);
    Ok(out)
}

/// The images a manifest table lists, in this process's `shard` (by a hash of the id).
pub(crate) fn manifest(path: &Path, shard: Shard) -> Result<Listed> {
    let entries = read_manifest(path)?
        .into_iter()
        .filter(|e| shard.contains_id(&e.id))
        .map(|e| file_entry(e.id, e.path))
        .collect();
    Ok(Listed { entries, rejected: Vec::new() })
}

/// A file name as text: valid UTF-8 kept, every other byte written `\xHH` (so that two names
/// differing only in invalid bytes keep distinct ids).
pub(crate) fn escape_name(name: &OsStr) -> String {
    let mut out = String::new();
    for chunk in name.as_encoded_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn ids(l: &Listed) -> Vec<&str> {
        l.entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn walks_in_name_order_with_relative_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("animals/cats")).unwrap();
        for f in ["animals/cats/tom.png", "map.svg", "animals/b.jpg", ".hidden", "z.gif"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let l = walk(dir.path(), Shard::ALL).unwrap();
        assert_eq!(ids(&l), ["animals/b.jpg", "animals/cats/tom.png", "map.svg", "z.gif"]);
        assert_eq!(l.entries[2].extension.as_deref(), Some("svg"));
        assert!(l.rejected.is_empty());
    }

    #[test]
    fn link_loops_are_entered_once_and_file_links_kept() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/img.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(r.join("a"), r.join("a/b/up")).unwrap(); // loop
        std::os::unix::fs::symlink(r, r.join("a/root")).unwrap(); // a second loop
        std::os::unix::fs::symlink(r.join("a/b/img.jpg"), r.join("second.jpg")).unwrap(); // a file link
        let l = walk(r, Shard::ALL).unwrap();
        assert_eq!(ids(&l), ["a/b/img.jpg", "second.jpg"]);
    }

    #[test]
    fn fifos_and_non_utf8_names_are_rejected_with_unique_ids() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("pipe.jpg").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        for name in [&b"caf\xe9.jpg"[..], b"caf\xe8.jpg", "caf\u{FFFD}.jpg".as_bytes()] {
            std::fs::write(dir.path().join(OsStr::from_bytes(name)), b"x").unwrap();
        }
        let l = walk(dir.path(), Shard::ALL).unwrap();
        assert_eq!(ids(&l), ["caf\u{FFFD}.jpg"]);
        let mut rejected: Vec<(&str, FailureKind)> =
            l.rejected.iter().map(|r| (r.id.as_str(), r.failure.kind)).collect();
        rejected.sort();
        assert_eq!(
            rejected,
            [
                ("caf\\xE8.jpg", FailureKind::BadName),
                ("caf\\xE9.jpg", FailureKind::BadName),
                ("pipe.jpg", FailureKind::NotAFile)
            ]
        );
    }

    #[test]
    fn shards_partition_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(dir.path().join(format!("{i}.png")), b"x").unwrap();
        }
        let mut all: Vec<String> = (0..3)
            .flat_map(|index| walk(dir.path(), Shard { index, count: 3 }).unwrap().entries)
            .map(|e| e.id)
            .collect();
        all.sort();
        let mut expected: Vec<String> = (0..50).map(|i| format!("{i}.png")).collect();
        expected.sort();
        assert_eq!(all, expected);
    }
}
