//! webdataset tar shards, as img2dataset writes them: consecutive members `<key>.<ext>` form one
//! sample (`00000123.jpg`, `00000123.json`, `00000123.txt`). The key is the member's path up to
//! the first `.` of its file name (webdataset's rule); the id is the key; the image is the
//! sample's member whose extension comes first in [`IMAGE_EXTENSIONS`].
//!
//! Listing reads only the headers (the archive is read with seeks past the data), and records
//! each image member's offset and length, so that its bytes are later read on any thread with
//! one positioned read. Compressed archives (`.tar.gz`) cannot be read that way and are refused.

use std::fs::File;
use std::path::{Path, PathBuf};

use feature_cache::{Origin, Progress, Shard};

use crate::catalog::{CatalogEntry, Locator, Rejected};
use crate::decode::{FailureKind, ImageFailure};
use crate::error::{InputError, Result};
use crate::files::{escape_name, Listed};

/// Member extensions that hold an image, in order of preference when a sample has several.
/// Formats this build does not decode are listed so their samples are recorded as
/// `unsupported-format`, not as samples without an image.
pub const IMAGE_EXTENSIONS: [&str; 15] = [
    "jpg", "jpeg", "png", "webp", "gif", "tif", "tiff", "bmp", "svg", "svgz", "avif", "heic", "heif", "jxl",
    "jp2",
];

/// A member of the sample being gathered.
struct Member {
    name: String,
    ext: String,
    offset: u64,
    len: u64,
}

/// Splits a member path into webdataset's key and extension.
pub(crate) fn key_and_extension(name: &str) -> (&str, &str) {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[base_start..].find('.') {
        Some(dot) => (&name[..base_start + dot], &name[base_start + dot + 1..]),
        None => (name, ""),
    }
}

/// Lists the samples of the tar `files` that belong to `shard` (whole files are dealt out to
/// shards in turn). Shard `i` of the returned list is `files[i]`.
pub(crate) fn catalog(
    files: &[PathBuf],
    shard: Shard,
    progress: &dyn Progress,
) -> Result<(Vec<PathBuf>, Listed)> {
    let mut listed = Listed { entries: Vec::new(), rejected: Vec::new() };
    progress.start("listing tar shards", files.len() as u64, "files");
    for (index, path) in files.iter().enumerate() {
        if shard.takes_position(index) {
            list_archive(path, index, &mut listed)?;
        }
        progress.advance(1);
    }
    Ok((files.to_vec(), listed))
}

fn list_archive(path: &Path, index: usize, out: &mut Listed) -> Result<()> {
    let name = path.to_string_lossy();
    if name.ends_with(".gz") || name.ends_with(".tgz") || name.ends_with(".zst") {
        return Err(InputError::tar(
            path,
            "compressed archive: decompress it first (members are read by offset)",
        ));
    }
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| InputError::io(path, e))?.len();
    let mut archive = tar::Archive::new(file);
    let entries = archive.entries_with_seek().map_err(|e| InputError::tar(path, e.to_string()))?;
    let mut sample: Option<(String, Vec<Member>)> = None;
    let mut last = String::from("(start of archive)");
    for e in entries {
        let e = e.map_err(|err| InputError::tar(path, format!("after member `{last}`: {err}")))?;
        let kind = e.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let raw = e.path_bytes();
        let member = match std::str::from_utf8(&raw) {
            Ok(s) => s.trim_start_matches("./").to_string(),
            Err(_) => {
                use std::os::unix::ffi::OsStrExt;
                out.rejected.push(Rejected {
                    id: escape_name(std::ffi::OsStr::from_bytes(&raw)),
                    origin: None,
                    failure: ImageFailure::new(
                        FailureKind::BadName,
                        format!("member name in {} is not UTF-8", path.display()),
                    ),
                });
                continue;
            }
        };
        last = member.clone();
        let (key, ext) = key_and_extension(&member);
        let m = Member {
            name: member.clone(),
            ext: ext.to_ascii_lowercase(),
            offset: e.raw_file_position(),
            len: e.size(),
        };
        let key = key.to_string();
        match &mut sample {
            Some((k, members)) if *k == key => members.push(m),
            _ => {
                if let Some((k, members)) = sample.take() {
                    finish_sample(path, index, file_len, k, members, out);
                }
                sample = Some((key, vec![m]));
            }
        }
    }
    if let Some((k, members)) = sample.take() {
        finish_sample(path, index, file_len, k, members, out);
    }
    Ok(())
}

fn finish_sample(
    path: &Path,
    index: usize,
    file_len: u64,
    key: String,
    members: Vec<Member>,
    out: &mut Listed,
) {
    let chosen = IMAGE_EXTENSIONS.iter().find_map(|ext| members.iter().find(|m| m.ext == *ext));
    let Some(m) = chosen else {
        let exts: Vec<&str> = members.iter().map(|m| m.ext.as_str()).collect();
        out.rejected.push(Rejected {
            id: key,
            origin: Some(Origin::TarMember { shard: path.to_path_buf(), member: members[0].name.clone() }),
            failure: ImageFailure::new(
                FailureKind::NotAnImage,
                format!("sample has no image member (members: .{})", exts.join(", .")),
            ),
        });
        return;
    };
    let origin = Origin::TarMember { shard: path.to_path_buf(), member: m.name.clone() };
    if m.offset + m.len > file_len {
        out.rejected.push(Rejected {
            id: key,
            origin: Some(origin),
            failure: ImageFailure::new(
                FailureKind::Corrupt,
                "the archive ends inside this member (truncated tar)",
            ),
        });
        return;
    }
    out.entries.push(CatalogEntry {
        id: key,
        origin,
        extension: Some(m.ext.rsplit('.').next().unwrap_or(&m.ext).to_string()),
        locator: Locator::TarRange { shard: index, offset: m.offset, len: m.len },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_webdataset() {
        assert_eq!(key_and_extension("00000123.jpg"), ("00000123", "jpg"));
        assert_eq!(key_and_extension("dir.v2/abc.seg.png"), ("dir.v2/abc", "seg.png"));
        assert_eq!(key_and_extension("noext"), ("noext", ""));
    }

    fn tar_with(members: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn samples_are_grouped_and_the_image_member_chosen() {
        let (_d, path) = tar_with(&[
            ("000.jpg", b"JPEGDATA"),
            ("000.json", b"{}"),
            ("000.txt", b"a cat"),
            ("001.json", b"{}"),
            ("002.png", b"PNG"),
            ("002.jpg", b"JPG"),
        ]);
        let mut out = Listed { entries: Vec::new(), rejected: Vec::new() };
        list_archive(&path, 0, &mut out).unwrap();
        let got: Vec<(&str, String)> =
            out.entries.iter().map(|e| (e.id.as_str(), e.origin.to_string())).collect();
        assert_eq!(got[0].0, "000");
        assert!(got[0].1.ends_with("00000.tar member 000.jpg"));
        assert_eq!(got[1].0, "002");
        assert!(got[1].1.ends_with("member 002.jpg"), "jpg is preferred over png");
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].failure.kind, FailureKind::NotAnImage);
        assert!(out.rejected[0].failure.message.contains(".json"));
        let Locator::TarRange { offset, len, .. } = out.entries[0].locator else { panic!() };
        let f = File::open(&path).unwrap();
        assert_eq!(crate::read::read_range(&f, offset, len).unwrap(), b"JPEGDATA");
    }

    #[test]
    fn compressed_archives_are_refused_by_name() {
        let mut out = Listed { entries: Vec::new(), rejected: Vec::new() };
        let err = list_archive(&PathBuf::from("x.tar.gz"), 0, &mut out).unwrap_err().to_string();
        assert!(err.contains("compressed archive"), "{err}");
    }
}
