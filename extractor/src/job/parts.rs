//! The files one shard of a job writes into a cache: embedding parts
//! `emb-<shard>-<seq>.parquet` and failure tables `_failures/failures-<shard>-<seq>.parquet`, each
//! published whole (temp + rename), a part holding at most `part_size` images.
//!
//! A shard is written by one process at a time: [`ShardLock`] holds an advisory lock on
//! `.lock-<shard>` for the whole job (a second process for the same shard stops at once with a
//! message naming the holder). Under that lock, temporaries left by earlier, killed writers of
//! the shard are removed before work starts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use feature_cache::atomic::{remove_stale_temps, temp_target};
use feature_cache::failures::failures_dir;
use feature_cache::{CacheMetadata, EmbeddingWriter, Failure, FailureWriter, Origin, Shard};

use super::heads::Heads;
use crate::error::{ExtractError, Result};

fn io(path: &Path, cause: std::io::Error) -> ExtractError {
    ExtractError::Io { path: path.to_path_buf(), cause }
}

/// The lock of one shard of a cache, held while the job runs (released when dropped or when
/// the process dies, however it dies).
#[derive(Debug)]
pub struct ShardLock {
    _file: File,
    /// Temporaries of killed writers removed when the lock was taken.
    pub stale_removed: usize,
}

impl ShardLock {
    /// Locks shard `shard` of the cache `out` without waiting, and removes the shard's stale
    /// temporaries.
    pub fn acquire(out: &Path, shard: Shard) -> Result<Self> {
        let path = out.join(format!(".lock-{}", shard.tag()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(ExtractError::Usage(format!(
                    "{}: shard {shard} is being written by another extractor ({}): wait for it to finish, or give \
                     this one another --shard",
                    out.display(),
                    if holder.trim().is_empty() { "holder unknown" } else { holder.trim() }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path, e)),
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        file.set_len(0).map_err(|e| io(&path, e))?;
        write!(file, "pid {} on {}", std::process::id(), host.trim()).map_err(|e| io(&path, e))?;
        let tag = format!("-{}-", shard.tag());
        let ours = |target: &str| {
            target.contains(&tag) && (target.starts_with("emb-") || target.starts_with("failures-"))
        };
        let stale_removed = remove_stale_temps(out, &ours)? + remove_stale_temps(&failures_dir(out), &ours)?;
        Ok(Self { _file: file, stale_removed })
    }
}

/// The next parts of one shard and the failures waiting to be written with them.
pub struct Parts {
    out: PathBuf,
    tag: String,
    next: usize,
    meta: CacheMetadata,
    part_size: usize,
    writer: Option<EmbeddingWriter>,
    failures: Vec<Failure>,
    /// Heads applied to every embedding, whose predictions parts follow the embedding parts.
    pub heads: Heads,
    /// Parts published so far.
    pub written: Vec<PathBuf>,
}

impl Parts {
    /// Continues the shard's sequence in `out` (after the highest part or table already there).
    pub fn new(
        out: &Path,
        shard: Shard,
        meta: CacheMetadata,
        part_size: usize,
        heads: Heads,
    ) -> Result<Self> {
        let tag = shard.tag();
        let mut next = 0;
        for dir in [out.to_path_buf(), failures_dir(out)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // finished files and the temporaries of unfinished ones alike
                let target = temp_target(&name).unwrap_or(&name).to_string();
                let seq = ["emb-", "failures-"].iter().find_map(|p| {
                    target
                        .strip_prefix(p)?
                        .strip_prefix(&tag)?
                        .strip_prefix('-')?
                        .strip_suffix(".parquet")?
                        .parse::<usize>()
                        .ok()
                });
                if let Some(seq) = seq {
                    next = next.max(seq + 1);
                }
            }
        }
        std::fs::create_dir_all(failures_dir(out)).map_err(|e| io(&failures_dir(out), e))?;
        Ok(Self {
            out: out.to_path_buf(),
            tag,
            next,
            meta,
            part_size: part_size.max(1),
            writer: None,
            failures: Vec::new(),
            heads,
            written: Vec::new(),
        })
    }

    /// Appends one embedding; publishes the part when it holds `part_size` images.
    pub fn push(
        &mut self,
        id: &str,
        embedding: &[f32],
        width: u32,
        height: u32,
        origin: &Origin,
    ) -> Result<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let path = self.out.join(format!("emb-{}-{:06}.parquet", self.tag, self.next));
                self.writer.insert(EmbeddingWriter::create(path, self.meta.clone())?)
            }
        };
        writer.push(id, embedding, width, height, Some(origin))?;
        if writer.rows() >= self.part_size {
            self.finish_part()?;
        }
        Ok(())
    }

    /// Records a failure, written with the next part (or on its own once a part's worth waits).
    pub fn fail(&mut self, failure: Failure) -> Result<()> {
        self.failures.push(failure);
        if self.failures.len() >= self.part_size && self.writer.is_none() {
            self.write_failures()?;
            self.next += 1;
        }
        Ok(())
    }

    /// Rows in the part being written.
    pub fn open_rows(&self) -> usize {
        self.writer.as_ref().map_or(0, EmbeddingWriter::rows)
    }

    fn finish_part(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let rows = w.rows();
            let path = w.finish()?;
            self.heads.finish_part(&path, rows)?;
            self.written.push(path);
        }
        self.write_failures()?;
        self.next += 1;
        Ok(())
    }

    fn write_failures(&mut self) -> Result<()> {
        if !self.failures.is_empty() {
            let path =
                failures_dir(&self.out).join(format!("failures-{}-{:06}.parquet", self.tag, self.next));
            FailureWriter::write(&path, &self.failures)?;
            self.failures.clear();
        }
        Ok(())
    }

    /// Publishes what is left: the last part and the failures since the last one.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if self.writer.is_some() || !self.failures.is_empty() {
            self.finish_part()?;
        }
        Ok(self.written)
    }
}
