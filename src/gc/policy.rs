//! [`RetentionPolicy`]: which versions retention keeps, and [`KeepReason`]: why it kept one.

use std::time::Duration;

/// Which manifest versions to keep. A version is kept if any rule keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N versions (at least 1 is always kept).
    pub keep_last: Option<u64>,
    /// Keep versions younger than this.
    pub keep_within: Option<Duration>,
    /// Keep the newest version of each of the last N hours that have versions (UTC).
    pub keep_hourly: Option<u64>,
    /// Keep the newest version of each of the last N days that have versions (UTC).
    pub keep_daily: Option<u64>,
    /// Keep the newest version of each of the last N weeks (Monday to Sunday, UTC).
    pub keep_weekly: Option<u64>,
    /// Keep the newest version of each of the last N calendar months (UTC).
    pub keep_monthly: Option<u64>,
    /// Keep the newest version of each of the last N calendar years (UTC).
    pub keep_yearly: Option<u64>,
}

/// Why retention keeps a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    /// The latest version, always kept.
    Latest,
    /// Among the newest `keep_last`.
    Last,
    /// Younger than `keep_within`.
    Within,
    /// Younger than the store's `version_min_age`: idle readers may still probe through it.
    MinAge,
    /// No rule is set: every version is kept.
    KeepAll,
    /// Pinned by this snapshot.
    Snapshot(String),
    /// The newest of its hour (`keep_hourly`).
    Hourly,
    /// The newest of its day (`keep_daily`).
    Daily,
    /// The newest of its week (`keep_weekly`).
    Weekly,
    /// The newest of its month (`keep_monthly`).
    Monthly,
    /// The newest of its year (`keep_yearly`).
    Yearly,
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::Latest => f.write_str("latest"),
            KeepReason::Last => f.write_str("keep_last"),
            KeepReason::Within => f.write_str("keep_within"),
            KeepReason::MinAge => f.write_str("min_age"),
            KeepReason::KeepAll => f.write_str("keep_all"),
            KeepReason::Snapshot(name) => write!(f, "snapshot:{name}"),
            KeepReason::Hourly => f.write_str("keep_hourly"),
            KeepReason::Daily => f.write_str("keep_daily"),
            KeepReason::Weekly => f.write_str("keep_weekly"),
            KeepReason::Monthly => f.write_str("keep_monthly"),
            KeepReason::Yearly => f.write_str("keep_yearly"),
        }
    }
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            keep_last: Some(20),
            keep_within: Some(Duration::from_secs(24 * 3600)),
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
        }
    }
}

impl RetentionPolicy {
    /// Keeps every version.
    pub fn keep_all() -> Self {
        RetentionPolicy {
            keep_last: None,
            keep_within: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
        }
    }

    /// True if no rule is set (every version is kept).
    pub fn keeps_all(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
    }
}
