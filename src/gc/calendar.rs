//! Calendar retention, as restic's `--keep-daily`, `--keep-weekly` and `--keep-monthly`:
//! for each rule with a count N, the newest version of each of the last N days (ISO weeks
//! starting on Monday, months) that have versions, in UTC, by the time each version was
//! stored.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{KeepReason, RetentionPolicy};

/// Days since 1970-01-01 (UTC) of `t`; times before the epoch count as day 0.
fn day(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(i64::MAX)
}

/// The ISO week (Monday to Sunday) of a day: 1970-01-01 was a Thursday.
fn week(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

/// Year and month of a day since the epoch (proleptic Gregorian, H. Hinnant's algorithm),
/// as `year * 12 + month - 1`.
fn month(day: i64) -> i64 {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    y * 12 + m - 1
}

/// A rule's count, its period of a day, and the reason it gives.
type Rule = (Option<u64>, fn(i64) -> i64, KeepReason);

/// The versions the calendar rules of `policy` keep, each with the rules that keep it.
/// `versions` are `(number, stored at)`; the newest version of a period is the one with
/// the highest number.
pub(crate) fn keeps(
    versions: &[(u64, SystemTime)],
    policy: &RetentionPolicy,
) -> BTreeMap<u64, Vec<KeepReason>> {
    let mut out: BTreeMap<u64, Vec<KeepReason>> = BTreeMap::new();
    let mut newest_first: Vec<(u64, i64)> = versions.iter().map(|&(v, t)| (v, day(t))).collect();
    newest_first.sort_unstable_by_key(|&(v, _)| std::cmp::Reverse(v));
    let rules: [Rule; 3] = [
        (policy.keep_daily, |d| d, KeepReason::Daily),
        (policy.keep_weekly, week, KeepReason::Weekly),
        (policy.keep_monthly, month, KeepReason::Monthly),
    ];
    for (count, period, reason) in rules {
        let Some(count) = count else { continue };
        let mut left = count;
        let mut last = None;
        for &(v, d) in &newest_first {
            if left == 0 {
                break;
            }
            let p = period(d);
            if last != Some(p) {
                last = Some(p);
                left -= 1;
                out.entry(v).or_default().push(reason.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(day: u64, hour: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(day * 86_400 + hour * 3600)
    }

    #[test]
    fn months_and_weeks_follow_the_calendar() {
        assert_eq!(month(0), 1970 * 12); // 1970-01-01
        assert_eq!(month(31), 1970 * 12 + 1); // 1970-02-01
        assert_eq!(month(59), 1970 * 12 + 2); // 1970-03-01
        assert_eq!(month(19_723), 2024 * 12); // 2024-01-01
        assert_eq!(month(19_782), 2024 * 12 + 1); // 2024-02-29
        assert_eq!(week(3), week(0)); // Sunday 1970-01-04 ends the first week
        assert_eq!(week(4), week(0) + 1); // Monday 1970-01-05 starts the next
    }

    #[test]
    fn the_newest_version_of_each_of_the_last_n_periods_is_kept() {
        // Versions 1-3 on day 10, 4-5 on day 11, 6 on day 14 (the next week: day 11 is a
        // Monday... of the week of days 11-17), 7 on day 45 (another month).
        let versions = [
            (1, at(10, 1)),
            (2, at(10, 5)),
            (3, at(10, 9)),
            (4, at(11, 1)),
            (5, at(11, 2)),
            (6, at(14, 0)),
            (7, at(45, 0)),
        ];
        let daily = RetentionPolicy {
            keep_daily: Some(3),
            ..RetentionPolicy::keep_all()
        };
        let kept: Vec<u64> = keeps(&versions, &daily).into_keys().collect();
        assert_eq!(kept, [5, 6, 7]);
        let weekly = RetentionPolicy {
            keep_weekly: Some(10),
            ..RetentionPolicy::keep_all()
        };
        // Day 10 is a Sunday (week of days 4-10); days 11 and 14 share a week.
        let kept: Vec<u64> = keeps(&versions, &weekly).into_keys().collect();
        assert_eq!(kept, [3, 6, 7]);
        let monthly = RetentionPolicy {
            keep_monthly: Some(1),
            keep_daily: Some(1),
            ..RetentionPolicy::keep_all()
        };
        let k = keeps(&versions, &monthly);
        assert_eq!(k.len(), 1);
        assert_eq!(k[&7], [KeepReason::Daily, KeepReason::Monthly]);
        assert!(keeps(&versions, &RetentionPolicy::keep_all()).is_empty());
    }
}
