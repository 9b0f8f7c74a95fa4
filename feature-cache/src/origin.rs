//! Where an image's bytes are: a file of its own, a row of a Parquet shard or a member of a tar
//! shard. The cache records it per embedding (columns `source`, `source_row`, `source_member`)
//! so that a report can show the image again without the input being given twice.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where one image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// A file of its own.
    File(PathBuf),
    /// A row of a Parquet shard (0-based over the whole file).
    ParquetRow {
        /// The shard.
        shard: PathBuf,
        /// Row in the file.
        row: u64,
    },
    /// A member of a tar shard.
    TarMember {
        /// The shard.
        shard: PathBuf,
        /// The member's path inside the archive.
        member: String,
    },
}

impl Origin {
    /// The file holding the bytes (the image itself or its shard).
    pub fn path(&self) -> &Path {
        match self {
            Origin::File(p) => p,
            Origin::ParquetRow { shard, .. } | Origin::TarMember { shard, .. } => shard,
        }
    }

    /// The three cache columns: `source` (the file), `source_row`, `source_member`.
    pub fn to_columns(&self) -> (String, Option<u64>, Option<String>) {
        let source = self.path().to_string_lossy().into_owned();
        match self {
            Origin::File(_) => (source, None, None),
            Origin::ParquetRow { row, .. } => (source, Some(*row), None),
            Origin::TarMember { member, .. } => (source, None, Some(member.clone())),
        }
    }

    /// Back from the cache columns; `None` when no source was recorded (caches written before
    /// format 2, or a row with both a row and a member, which no writer produces).
    pub fn from_columns(source: Option<&str>, row: Option<u64>, member: Option<&str>) -> Option<Self> {
        let path = PathBuf::from(source?);
        match (row, member) {
            (None, None) => Some(Origin::File(path)),
            (Some(row), None) => Some(Origin::ParquetRow { shard: path, row }),
            (None, Some(m)) => Some(Origin::TarMember { shard: path, member: m.to_string() }),
            (Some(_), Some(_)) => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::ParquetRow { shard, row } => write!(f, "{} row {row}", shard.display()),
            Origin::TarMember { shard, member } => write!(f, "{} member {member}", shard.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_display() {
        let all = [
            Origin::File("/data/a.jpg".into()),
            Origin::ParquetRow { shard: "wit/00001.parquet".into(), row: 17 },
            Origin::TarMember { shard: "shards/00002.tar".into(), member: "000020011.jpg".into() },
        ];
        for o in &all {
            let (s, r, m) = o.to_columns();
            assert_eq!(Origin::from_columns(Some(&s), r, m.as_deref()).as_ref(), Some(o));
        }
        assert_eq!(all[1].to_string(), "wit/00001.parquet row 17");
        assert_eq!(all[2].to_string(), "shards/00002.tar member 000020011.jpg");
        assert_eq!(Origin::from_columns(None, None, None), None);
        assert_eq!(Origin::from_columns(Some("x"), Some(1), Some("y")), None);
    }
}
