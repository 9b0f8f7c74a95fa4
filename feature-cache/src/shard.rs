//! One job split over several processes or nodes: `--shard I/N`, or a Slurm job array.
//!
//! Both binaries parse shards here, with one rule. Under a Slurm array without `--shard`, task
//! `SLURM_ARRAY_TASK_ID` of an array `MIN-MAX:STEP` (`SLURM_ARRAY_TASK_MIN`, `_MAX`, `_STEP`,
//! `_COUNT`) is shard `(ID - MIN) / STEP` of `COUNT`: `--array=0-15` and `--array=0-30:2` both
//! make 16 shards, and a throttle (`%4`) changes nothing. Arrays that are not one range with a
//! constant step (`--array=1,2,7`) are refused: their task ids do not number the shards.

use std::fmt;
use std::str::FromStr;

use crate::split::hash_unit;

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// 0-based index of this shard.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// Salt of the hash that assigns an id to a shard.
const SHARD_SALT: &str = "wit-shard";

impl Shard {
    /// The whole job.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this is the whole job.
    pub fn is_all(&self) -> bool {
        self.count <= 1
    }

    /// Whether `id` belongs to this shard, by a hash of the id: stable when a list is reordered
    /// or grows.
    pub fn contains_id(&self, id: &str) -> bool {
        self.is_all()
            || ((hash_unit(SHARD_SALT, id) * self.count as f64) as usize).min(self.count - 1) == self.index
    }

    /// Whether the unit at position `position` of an ordered list (a row group, a file) is this
    /// shard's: positions are dealt out in turn, `position mod count`.
    pub fn takes_position(&self, position: usize) -> bool {
        position % self.count.max(1) == self.index
    }

    /// `s0003of0016`: names this shard's files.
    pub fn tag(&self) -> String {
        format!("s{:04}of{:04}", self.index, self.count)
    }

    /// The shard of this process: `arg` when given, else the Slurm array's, else the whole job.
    pub fn resolve(arg: Option<Shard>) -> Result<Shard, String> {
        match arg {
            Some(s) => Ok(s),
            None => Ok(Self::from_env(&|k| std::env::var(k).ok())?.unwrap_or(Shard::ALL)),
        }
    }

    /// The shard of a Slurm array task from its environment (`var(name)`); `None` outside an
    /// array.
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) else {
            return Ok(None);
        };
        let number = |name: &str, value: &str| {
            value.trim().parse::<usize>().map_err(|_| format!("{name}={value} is not a number"))
        };
        let id = number("SLURM_ARRAY_TASK_ID", &id)?;
        let count = number("SLURM_ARRAY_TASK_COUNT", &count)?;
        let min = var("SLURM_ARRAY_TASK_MIN").map(|v| number("SLURM_ARRAY_TASK_MIN", &v)).transpose()?;
        let min = min.unwrap_or(0);
        let step = var("SLURM_ARRAY_TASK_STEP").map(|v| number("SLURM_ARRAY_TASK_STEP", &v)).transpose()?;
        let step = step.unwrap_or(1).max(1);
        let max = var("SLURM_ARRAY_TASK_MAX").map(|v| number("SLURM_ARRAY_TASK_MAX", &v)).transpose()?;
        let irregular = || {
            format!(
                "Slurm array task {id} (min {min}, step {step}, count {count}{}) does not number a shard: \
                 use one range with a constant step, e.g. --array=0-15 or --array=0-30:2, or pass --shard I/N",
                max.map(|m| format!(", max {m}")).unwrap_or_default()
            )
        };
        if count == 0 || id < min || (id - min) % step != 0 {
            return Err(irregular());
        }
        if max.is_some_and(|m| m != min + (count - 1) * step) {
            return Err(irregular());
        }
        let index = (id - min) / step;
        if index >= count {
            return Err(irregular());
        }
        Ok(Some(Shard { index, count }))
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard `{s}`: expected I/N with 0 <= I < N, e.g. 3/16");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse::<usize>().map_err(|_| bad())?;
        let count = n.trim().parse::<usize>().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!("3/16".parse::<Shard>(), Ok(Shard { index: 3, count: 16 }));
        assert_eq!(" 0 / 1 ".parse::<Shard>(), Ok(Shard::ALL));
        for bad in ["16/16", "1/0", "-1/4", "3", "a/b", "3/16/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 3, count: 16 }.tag(), "s0003of0016");
    }

    #[test]
    fn slurm_ranges_steps_and_offsets_number_the_shards() {
        // --array=0-3
        let s = Shard::from_env(&env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "4")]));
        assert_eq!(s, Ok(Some(Shard { index: 2, count: 4 })));
        // --array=0-6:2%2: ids 0, 2, 4, 6
        for (id, index) in [("0", 0), ("2", 1), ("4", 2), ("6", 3)] {
            let e = env(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
            ]);
            assert_eq!(Shard::from_env(&e), Ok(Some(Shard { index, count: 4 })), "task {id}");
        }
        // --array=5-7
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
        ]);
        assert_eq!(Shard::from_env(&e), Ok(Some(Shard { index: 2, count: 3 })));
        assert_eq!(Shard::from_env(&env(&[])), Ok(None));
    }

    #[test]
    fn slurm_values_that_do_not_number_a_shard_are_errors_not_zero() {
        let bad_min = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "x"),
        ]);
        assert_eq!(Shard::from_env(&bad_min), Err("SLURM_ARRAY_TASK_MIN=x is not a number".to_string()));
        // --array=1,2,7: count 3, min 1, max 7
        let list = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
        ]);
        let err = Shard::from_env(&list).unwrap_err();
        assert!(err.contains("one range with a constant step"), "{err}");
        let off_step = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert!(Shard::from_env(&off_step).is_err());
    }

    #[test]
    fn id_hashing_partitions_and_is_pinned() {
        let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let id = format!("File:{i}.jpg");
            let owners: Vec<usize> = shards.iter().filter(|s| s.contains_id(&id)).map(|s| s.index).collect();
            assert_eq!(owners.len(), 1, "{id} belongs to exactly one shard");
            counts[owners[0]] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
        // known answers: a change of the hash or salt would move images between shards
        let owner = |id: &str| shards.iter().find(|s| s.contains_id(id)).unwrap().index;
        assert_eq!(
            ["a.jpg", "b.jpg", "Commons:Example.jpg", "img0001.png"].map(owner),
            [PINNED_A, PINNED_B, PINNED_C, PINNED_D]
        );
        assert!(
            Shard { index: 1, count: 3 }.takes_position(4) && !Shard { index: 1, count: 3 }.takes_position(5)
        );
    }

    // Computed independently in Python: min(floor(u * 4), 3) with u the first 8 bytes of
    // SHA-256("wit-shard" 0x00 id) >> 11, over 2^53.
    const PINNED_A: usize = 2;
    const PINNED_B: usize = 2;
    const PINNED_C: usize = 2;
    const PINNED_D: usize = 1;
}
