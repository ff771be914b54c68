//! Sharding a folder's images over the tasks of a job array: task I of N takes every N-th image from the I-th
//! (0-based), so each shard holds about as many images of each class. The shard can be given as `I/N` or read
//! from the scheduler: `slurm` (a Slurm array's `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN` and
//! `SLURM_ARRAY_TASK_COUNT`) or `k8s/N` (a Kubernetes indexed Job's `JOB_COMPLETION_INDEX`, N completions).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Task `index` of `count` (0 ≤ index < count); `0/1` is everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl Shard {
    /// One shard holding everything.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// This shard's items: every `count`-th from `index`, in order.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .skip(self.index)
            .step_by(self.count.max(1))
            .cloned()
            .collect()
    }

    pub fn is_all(&self) -> bool {
        self.count <= 1
    }

    fn checked(index: usize, count: usize, text: &str) -> Result<Shard, String> {
        if count >= 1 && index < count {
            Ok(Shard { index, count })
        } else {
            Err(format!(
                "`{text}`: shard {index} of {count}: expected 0 ≤ I < N"
            ))
        }
    }

    /// The shard from a scheduler's environment (`env` looks a variable up).
    fn from_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let number = |name: &str| -> Result<usize, String> {
            env(name)
                .ok_or_else(|| format!("`{text}`: {name} is not set"))?
                .trim()
                .parse()
                .map_err(|_| format!("`{text}`: {name} is not a whole number"))
        };
        if text == "slurm" {
            let id = number("SLURM_ARRAY_TASK_ID")?;
            let min = number("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
            let count = number("SLURM_ARRAY_TASK_COUNT")?;
            return Shard::checked(id.saturating_sub(min), count, text);
        }
        if let Some(n) = text.strip_prefix("k8s/") {
            let count = n
                .parse()
                .map_err(|_| format!("`{text}`: expected k8s/N, N the Job's completions"))?;
            return Shard::checked(number("JOB_COMPLETION_INDEX")?, count, text);
        }
        Err(format!(
            "`{text}`: expected I/N (task I of N, from 0), slurm, or k8s/N"
        ))
    }

    /// Parse with a given environment (for tests).
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, String> {
        let text = text.trim();
        if let Some((i, n)) = text.split_once('/').filter(|(i, _)| *i != "k8s") {
            let parse = |v: &str| v.trim().parse::<usize>().ok();
            return match (parse(i), parse(n)) {
                (Some(i), Some(n)) => Shard::checked(i, n, text),
                _ => Err(format!("`{text}`: expected I/N, e.g. 0/4")),
            };
        }
        Shard::from_env(text, env)
    }
}

/// A shard as given on the command line: checked for its form when parsed, read from the scheduler's
/// environment only when resolved (so a command line can be checked where the job does not run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec(String);

impl ShardSpec {
    /// The shard, from the text and (for `slurm`, `k8s/N`) the process's environment.
    pub fn resolve(&self) -> Result<Shard, String> {
        Shard::parse_with_env(&self.0, |name| std::env::var(name).ok())
    }
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // The form is checked now, against a stand-in environment of task 0 of 1.
        let stand_in =
            |name: &str| Some(if name.ends_with("COUNT") { "1" } else { "0" }.to_string());
        Shard::parse_with_env(text, stand_in)?;
        Ok(ShardSpec(text.trim().to_string()))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_items_and_interleave_them() {
        let items: Vec<usize> = (0..10).collect();
        let mut seen = Vec::new();
        for index in 0..3 {
            let part = Shard { index, count: 3 }.select(&items);
            assert!(part.windows(2).all(|w| w[1] - w[0] == 3));
            seen.extend(part);
        }
        seen.sort();
        assert_eq!(seen, items);
        assert_eq!(Shard::ALL.select(&items), items);
    }

    #[test]
    fn shards_parse_from_text_slurm_and_kubernetes() {
        let none = |_: &str| None;
        assert_eq!(
            Shard::parse_with_env("2/4", none),
            Ok(Shard { index: 2, count: 4 })
        );
        assert!(Shard::parse_with_env("4/4", none).is_err());
        assert!(Shard::parse_with_env("x/4", none).is_err());
        let slurm = |name: &str| match name {
            "SLURM_ARRAY_TASK_ID" => Some("7".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::parse_with_env("slurm", slurm),
            Ok(Shard { index: 2, count: 4 })
        );
        let err = Shard::parse_with_env("slurm", none).unwrap_err();
        assert!(err.contains("SLURM_ARRAY_TASK_ID"), "{err}");
        let k8s = |name: &str| (name == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
        assert_eq!(
            Shard::parse_with_env("k8s/8", k8s),
            Ok(Shard { index: 3, count: 8 })
        );
        assert!(Shard::parse_with_env("k8s/3", k8s).is_err());
        // On the command line only the form is checked; the environment is read when the shard is resolved.
        assert!("slurm".parse::<ShardSpec>().is_ok());
        assert!("k8s/4".parse::<ShardSpec>().is_ok());
        assert!("k8s/x".parse::<ShardSpec>().is_err());
        assert!("3/2".parse::<ShardSpec>().is_err());
        assert_eq!(
            "1/3".parse::<ShardSpec>().unwrap().resolve(),
            Ok(Shard { index: 1, count: 3 })
        );
    }
}
