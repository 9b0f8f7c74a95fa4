//! The images an input holds — id, origin and how to reach the bytes — and the stream that
//! yields them with their bytes, whatever the input kind.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use feature_cache::Origin;

use crate::decode::{FailureKind, ImageFailure};
use crate::error::{InputError, Result};
use crate::parquet::{stream_rows, ParquetShard};
use crate::read::{read_file, read_range};

/// How the bytes of an entry are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Locator {
    /// A file of its own (the origin's path).
    File,
    /// `len` bytes at `offset` of tar shard `shard`.
    TarRange { shard: usize, offset: u64, len: u64 },
    /// A row of Parquet shard `shard`, in its row group `group` (the row is the origin's).
    ParquetRow { shard: usize, group: usize },
}

/// One image an input lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Its id, unique in the catalog.
    pub id: String,
    /// Where its bytes are.
    pub origin: Origin,
    /// The lower-case extension of its file or member name: the one hint decoding gets.
    pub extension: Option<String>,
    pub(crate) locator: Locator,
}

/// An item of the input that is no image to embed (a name that is not UTF-8, a FIFO, a sample
/// without an image, a repeated id …): recorded as a failure, never dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The id it would have had (made unique).
    pub id: String,
    /// Where it is, when that can be said.
    pub origin: Option<Origin>,
    /// Why it is rejected.
    pub failure: ImageFailure,
}

/// A shard file a catalog reads bytes from.
#[derive(Debug)]
pub(crate) enum ShardFile {
    Parquet(ParquetShard),
    Tar(PathBuf),
}

/// The images of an input (or of this process's shard of it), in input order.
#[derive(Debug)]
pub struct Catalog {
    /// What the input was read as.
    pub kind: crate::InputKind,
    /// The images.
    pub entries: Vec<CatalogEntry>,
    /// Items that are no image (recorded as failures).
    pub rejected: Vec<Rejected>,
    /// How the input was read, for the user (the columns chosen, the files found).
    pub notes: Vec<String>,
    pub(crate) shards: Vec<ShardFile>,
}

impl Catalog {
    /// Keeps only the entries and rejected items whose id satisfies `keep` (e.g. not finished
    /// by an earlier run).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|e| keep(&e.id));
        self.rejected.retain(|r| keep(&r.id));
    }

    /// Number of entries and rejected items.
    pub fn len(&self) -> usize {
        self.entries.len() + self.rejected.len()
    }

    /// Whether the catalog lists nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry with id `id`.
    pub fn find(&self, id: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Gives every entry in order to `f` as a [`SourceImage`], until `f` returns `false`. Bytes
    /// of Parquet rows are read here, one row group at a time; bytes of files and tar members
    /// when [`SourceImage::take_bytes`] is called (so they can be read on many threads). An
    /// input that cannot be read any more (a shard gone or damaged since it was listed) stops
    /// the stream with an error naming the shard and rows.
    pub fn stream(&self, mut f: impl FnMut(SourceImage) -> bool) -> Result<()> {
        let mut open_tar: Option<(usize, Arc<File>)> = None;
        let mut i = 0;
        while i < self.entries.len() {
            let entry = &self.entries[i];
            match &entry.locator {
                Locator::File => {
                    let path = entry.origin.path().to_path_buf();
                    if !f(SourceImage::new(entry, Content::File(path))) {
                        return Ok(());
                    }
                    i += 1;
                }
                Locator::TarRange { shard, offset, len } => {
                    let file = match &open_tar {
                        Some((s, f)) if s == shard => f.clone(),
                        _ => {
                            let ShardFile::Tar(path) = &self.shards[*shard] else {
                                unreachable!("tar locators point at tar shards")
                            };
                            let file = Arc::new(File::open(path).map_err(|e| InputError::io(path, e))?);
                            open_tar = Some((*shard, file.clone()));
                            file
                        }
                    };
                    if !f(SourceImage::new(entry, Content::Range(file, *offset, *len))) {
                        return Ok(());
                    }
                    i += 1;
                }
                Locator::ParquetRow { shard, group } => {
                    // the entries of this row group, which the catalog lists consecutively
                    let end = self.entries[i..]
                        .iter()
                        .position(|e| e.locator != entry.locator)
                        .map_or(self.entries.len(), |n| i + n);
                    let ShardFile::Parquet(p) = &self.shards[*shard] else {
                        unreachable!("Parquet locators point at Parquet shards")
                    };
                    let block = &self.entries[i..end];
                    let mut next = block.iter();
                    let mut stop = false;
                    stream_rows(p, *group, block, &mut |bytes, recorded_extension| {
                        let e = next.next().expect("one result per requested row");
                        let mut image = SourceImage::new(e, Content::Loaded(bytes));
                        if recorded_extension.is_some() {
                            image.extension = recorded_extension;
                        }
                        stop = !f(image);
                        !stop
                    })?;
                    if stop {
                        return Ok(());
                    }
                    i = end;
                }
            }
        }
        Ok(())
    }

    /// Where the bytes of the tar shard behind `entry` are, for tests and reports.
    pub fn shard_path(&self, entry: &CatalogEntry) -> Option<&Path> {
        match &entry.locator {
            Locator::File => None,
            Locator::TarRange { shard, .. } | Locator::ParquetRow { shard, .. } => match &self.shards[*shard]
            {
                ShardFile::Parquet(p) => Some(&p.path),
                ShardFile::Tar(p) => Some(p),
            },
        }
    }
}

/// Where a [`SourceImage`]'s bytes are.
enum Content {
    Loaded(std::result::Result<Vec<u8>, ImageFailure>),
    File(PathBuf),
    Range(Arc<File>, u64, u64),
}

/// One image as an input yields it: its id, its origin and its bytes.
pub struct SourceImage {
    /// The id.
    pub id: String,
    /// Where the bytes are.
    pub origin: Origin,
    /// The lower-case extension of its name, the decoder's one hint.
    pub extension: Option<String>,
    content: Content,
}

impl SourceImage {
    fn new(entry: &CatalogEntry, content: Content) -> Self {
        Self {
            id: entry.id.clone(),
            origin: entry.origin.clone(),
            extension: entry.extension.clone(),
            content,
        }
    }

    /// The image's bytes (reading them now for files and tar members), or why there are none.
    pub fn take_bytes(&mut self) -> std::result::Result<Vec<u8>, ImageFailure> {
        match std::mem::replace(&mut self.content, Content::Loaded(Err(taken()))) {
            Content::Loaded(bytes) => bytes,
            Content::File(path) => read_file(&path),
            Content::Range(file, offset, len) => read_range(&file, offset, len),
        }
    }
}

fn taken() -> ImageFailure {
    ImageFailure::new(FailureKind::Missing, "bytes already taken")
}

/// Makes the ids of `rejected` items unique among themselves and against `entries` (a rejected
/// name escaped to text can equal a real one), appending ` #2`, ` #3` … in order.
pub(crate) fn unique_rejected_ids(entries: &[CatalogEntry], rejected: &mut [Rejected]) {
    let mut taken: HashMap<String, usize> = entries.iter().map(|e| (e.id.clone(), 1)).collect();
    for r in rejected.iter_mut() {
        let n = taken.entry(r.id.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            let mut k = *n;
            let unique = loop {
                let candidate = format!("{} #{k}", r.id);
                if !taken.contains_key(&candidate) {
                    break candidate;
                }
                k += 1;
            };
            taken.insert(unique.clone(), 1);
            r.id = unique;
        }
    }
}

/// Moves every entry whose id an earlier entry already has into `rejected`, as a
/// [`FailureKind::DuplicateId`] naming the first: the first occurrence is the one embedded.
pub(crate) fn reject_duplicate_ids(entries: &mut Vec<CatalogEntry>, rejected: &mut Vec<Rejected>) {
    let mut first: HashMap<String, Origin> = HashMap::with_capacity(entries.len());
    entries.retain(|e| match first.get(&e.id) {
        None => {
            first.insert(e.id.clone(), e.origin.clone());
            true
        }
        Some(at) => {
            rejected.push(Rejected {
                id: e.id.clone(),
                origin: Some(e.origin.clone()),
                failure: ImageFailure::new(
                    FailureKind::DuplicateId,
                    format!("id `{}` already belongs to {at}, which is embedded under it", e.id),
                ),
            });
            false
        }
    });
}

/// The lower-case extension of a name (after its last dot), if any.
pub(crate) fn extension_of(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, path: &str) -> CatalogEntry {
        CatalogEntry {
            id: id.into(),
            origin: Origin::File(path.into()),
            extension: None,
            locator: Locator::File,
        }
    }

    #[test]
    fn repeated_ids_keep_the_first_and_record_the_rest() {
        let mut entries = vec![entry("a", "/1/a"), entry("b", "/1/b"), entry("a", "/2/a")];
        let mut rejected = Vec::new();
        reject_duplicate_ids(&mut entries, &mut rejected);
        assert_eq!(entries.iter().map(|e| e.origin.to_string()).collect::<Vec<_>>(), ["/1/a", "/1/b"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].failure.kind, FailureKind::DuplicateId);
        assert!(
            rejected[0].failure.message.contains("already belongs to /1/a"),
            "{}",
            rejected[0].failure.message
        );
    }

    #[test]
    fn rejected_ids_are_made_unique() {
        let entries = vec![entry("caf\u{FFFD}.jpg", "/x")];
        let failure = ImageFailure::new(FailureKind::BadName, "x");
        let mut rejected: Vec<Rejected> = ["caf\u{FFFD}.jpg", "caf\u{FFFD}.jpg", "caf\u{FFFD}.jpg #2", "z"]
            .iter()
            .map(|id| Rejected { id: id.to_string(), origin: None, failure: failure.clone() })
            .collect();
        unique_rejected_ids(&entries, &mut rejected);
        let ids: Vec<&str> = rejected.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["caf\u{FFFD}.jpg #2", "caf\u{FFFD}.jpg #3", "caf\u{FFFD}.jpg #2 #2", "z"]);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension_of("dir.d/Photo.JPG"), Some("jpg".into()));
        assert_eq!(extension_of("dir.d/README"), None);
        assert_eq!(extension_of("a.tar.gz"), Some("gz".into()));
    }
}
