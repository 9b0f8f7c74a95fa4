//! A catalog of images named by their recorded origins (as a cache stores them), so that a
//! report can read a few images again without the input being given twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use feature_cache::{Origin, Progress, Shard};

use crate::catalog::{
    extension_of, unique_rejected_ids, Catalog, CatalogEntry, Locator, Rejected, ShardFile,
};
use crate::decode::{FailureKind, ImageFailure};
use crate::error::{InputError, Result};
use crate::files::Listed;
use crate::parquet::{image_column, ParquetShard};
use crate::InputKind;

impl Catalog {
    /// A catalog of `images` (id and recorded origin): files are read as they are, Parquet rows
    /// from their shard's image column, tar members at the offset their shard's headers give.
    /// An image whose shard or member cannot be found is rejected with the reason.
    pub fn from_origins(mut images: Vec<(String, Origin)>, progress: &dyn Progress) -> Result<Catalog> {
        // in shard and row order, so that each row group is read once
        images.sort_by(|a, b| a.1.cmp(&b.1));
        let mut out = Listed { entries: Vec::new(), rejected: Vec::new() };
        let mut shards: Vec<ShardFile> = Vec::new();
        let mut parquet: BTreeMap<PathBuf, Option<usize>> = BTreeMap::new();
        let mut tars: BTreeMap<PathBuf, (usize, Members)> = BTreeMap::new();
        let reject = |out: &mut Listed, id: String, origin: Origin, why: String| {
            out.rejected.push(Rejected {
                id,
                origin: Some(origin),
                failure: ImageFailure::new(FailureKind::Missing, why),
            })
        };
        progress.start("finding images", images.len() as u64, "images");
        for (id, origin) in images {
            progress.advance(1);
            match &origin {
                Origin::File(p) => {
                    let extension = p.to_str().and_then(extension_of);
                    out.entries.push(CatalogEntry { id, origin, extension, locator: Locator::File });
                }
                Origin::ParquetRow { shard, row } => {
                    let index = match parquet.get(shard) {
                        Some(i) => *i,
                        None => {
                            let i = open_parquet(shard).ok().map(|p| {
                                shards.push(ShardFile::Parquet(p));
                                shards.len() - 1
                            });
                            parquet.insert(shard.clone(), i);
                            i
                        }
                    };
                    let Some(index) = index else {
                        reject(&mut out, id, origin.clone(), "its Parquet shard cannot be read".into());
                        continue;
                    };
                    let ShardFile::Parquet(p) = &shards[index] else { unreachable!("a Parquet shard") };
                    let row = *row;
                    let group = p
                        .groups
                        .iter()
                        .position(|&(first, rows)| (first..first + rows as u64).contains(&row));
                    match group {
                        Some(group) => out.entries.push(CatalogEntry {
                            id: id.clone(),
                            extension: extension_of(&id).filter(|e| e.len() <= 5),
                            origin,
                            locator: Locator::ParquetRow { shard: index, group },
                        }),
                        None => reject(&mut out, id, origin.clone(), format!("the shard has no row {row}")),
                    }
                }
                Origin::TarMember { shard, member } => {
                    if !tars.contains_key(shard) {
                        let members = tar_members(shard).unwrap_or_default();
                        shards.push(ShardFile::Tar(shard.clone()));
                        tars.insert(shard.clone(), (shards.len() - 1, members));
                    }
                    let (index, members) = &tars[shard];
                    match members.get(member) {
                        Some(&(offset, len)) => out.entries.push(CatalogEntry {
                            id,
                            extension: extension_of(member),
                            origin: origin.clone(),
                            locator: Locator::TarRange { shard: *index, offset, len },
                        }),
                        None => {
                            reject(&mut out, id, origin.clone(), format!("no member `{member}` in the shard"))
                        }
                    }
                }
            }
        }
        unique_rejected_ids(&out.entries, &mut out.rejected);
        Ok(Catalog {
            kind: InputKind::Files,
            entries: out.entries,
            rejected: out.rejected,
            notes: Vec::new(),
            shards,
        })
    }

    /// The images of `input` whose ids are in `wanted` (for caches that recorded no origins).
    pub fn select(
        input: &str,
        opts: &crate::InputOptions,
        wanted: &std::collections::HashSet<&str>,
        progress: &dyn Progress,
    ) -> Result<Catalog> {
        let mut c = Catalog::open(input, opts, Shard::ALL, progress)?;
        c.retain(|id| wanted.contains(id));
        Ok(c)
    }
}

fn open_parquet(path: &std::path::Path) -> Result<ParquetShard> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let b = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| InputError::parquet(path, e))?;
    let (image, _) = image_column(path, b.schema(), None)?;
    let mut groups = Vec::new();
    let mut first = 0u64;
    for g in b.metadata().row_groups() {
        groups.push((first, g.num_rows() as usize));
        first += g.num_rows() as u64;
    }
    Ok(ParquetShard { path: path.to_path_buf(), image, groups })
}

/// A tar shard's members: name -> (offset, length) of its data.
type Members = BTreeMap<String, (u64, u64)>;

/// Every member of a tar shard with the offset and length of its data.
fn tar_members(path: &std::path::Path) -> Result<Members> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    let mut out = BTreeMap::new();
    for e in archive.entries_with_seek().map_err(|e| InputError::tar(path, e.to_string()))? {
        let e = e.map_err(|e| InputError::tar(path, e.to_string()))?;
        if let Ok(name) = std::str::from_utf8(&e.path_bytes()) {
            out.insert(name.trim_start_matches("./").to_string(), (e.raw_file_position(), e.size()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use feature_cache::Silent;

    use super::*;

    #[test]
    fn images_are_found_again_by_their_origins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.png");
        std::fs::write(&file, b"PNGDATA").unwrap();
        let tar_path = dir.path().join("00000.tar");
        let mut b = tar::Builder::new(File::create(&tar_path).unwrap());
        for (name, data) in [("k1.jpg", &b"JPEG1"[..]), ("k1.json", b"{}"), ("k2.jpg", b"JPEG22")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        let c = Catalog::from_origins(
            vec![
                ("k2".into(), Origin::TarMember { shard: tar_path.clone(), member: "k2.jpg".into() }),
                ("a".into(), Origin::File(file)),
                ("gone".into(), Origin::TarMember { shard: tar_path.clone(), member: "k9.jpg".into() }),
            ],
            &Silent,
        )
        .unwrap();
        let mut got = Vec::new();
        c.stream(|mut img| {
            got.push((img.id.clone(), img.take_bytes().unwrap()));
            true
        })
        .unwrap();
        got.sort();
        assert_eq!(got, [("a".to_string(), b"PNGDATA".to_vec()), ("k2".to_string(), b"JPEG22".to_vec())]);
        assert_eq!(c.rejected.len(), 1);
        assert!(c.rejected[0].failure.message.contains("no member `k9.jpg`"));
    }
}
