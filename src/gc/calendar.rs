//! Calendar retention, as restic's `--keep-hourly`, `--keep-daily`, `--keep-weekly`,
//! `--keep-monthly` and `--keep-yearly`: for each rule with a count N, the newest version of
//! each of the last N hours (days, ISO weeks starting on Monday, months, years) that have
//! versions, in UTC, by the time each version was stored.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{KeepReason, RetentionPolicy};

/// Hours since 1970-01-01 00:00 (UTC) of `t`; times before the epoch count as hour 0.
fn hour_of(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 3600).unwrap_or(i64::MAX)
}

/// The day (since 1970-01-01) of an hour.
fn day(hour: i64) -> i64 {
    hour.div_euclid(24)
}

/// The ISO week (Monday to Sunday) of a day: 1970-01-01 was a Thursday.
fn week_of_day(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

/// Year and month of a day since the epoch (proleptic Gregorian, H. Hinnant's algorithm),
/// as `year * 12 + month - 1`.
fn month_of_day(day: i64) -> i64 {
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

/// A rule's count, its period of an hour, and the reason it gives.
type Rule = (Option<u64>, fn(i64) -> i64, KeepReason);

/// The versions the calendar rules of `policy` keep, each with the rules that keep it.
/// `versions` are `(number, stored at)`; the newest version of a period is the one with
/// the highest number.
pub(crate) fn keeps(
    versions: &[(u64, SystemTime)],
    policy: &RetentionPolicy,
) -> BTreeMap<u64, Vec<KeepReason>> {
    let mut out: BTreeMap<u64, Vec<KeepReason>> = BTreeMap::new();
    let mut newest_first: Vec<(u64, i64)> =
        versions.iter().map(|&(v, t)| (v, hour_of(t))).collect();
    newest_first.sort_unstable_by_key(|&(v, _)| std::cmp::Reverse(v));
    let rules: [Rule; 5] = [
        (policy.keep_hourly, |h| h, KeepReason::Hourly),
        (policy.keep_daily, day, KeepReason::Daily),
        (
            policy.keep_weekly,
            |h| week_of_day(day(h)),
            KeepReason::Weekly,
        ),
        (
            policy.keep_monthly,
            |h| month_of_day(day(h)),
            KeepReason::Monthly,
        ),
        (
            policy.keep_yearly,
            |h| month_of_day(day(h)).div_euclid(12),
            KeepReason::Yearly,
        ),
    ];
    for (count, period, reason) in rules {
        let Some(count) = count else { continue };
        let mut left = count;
        let mut last = None;
        for &(v, h) in &newest_first {
            if left == 0 {
                break;
            }
            let p = period(h);
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
        let month = month_of_day;
        let week = week_of_day;
        assert_eq!(month(0), 1970 * 12); // 1970-01-01
        assert_eq!(month(31), 1970 * 12 + 1); // 1970-02-01
        assert_eq!(month(59), 1970 * 12 + 2); // 1970-03-01
        assert_eq!(month(19_723), 2024 * 12); // 2024-01-01
        assert_eq!(month(19_782), 2024 * 12 + 1); // 2024-02-29
        assert_eq!(month(19_722), 2023 * 12 + 11); // 2023-12-31
        assert_eq!(week(3), week(0)); // Sunday 1970-01-04 ends the first week
        assert_eq!(week(4), week(0) + 1); // Monday 1970-01-05 starts the next
        assert_eq!(day(hour_of(at(2, 23))), 2);
        assert_eq!(day(hour_of(at(3, 0))), 3);
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
        // Hours: versions 4 and 5 are hours 1 and 2 of day 11; version 3 is hour 9 of day 10.
        let hourly = RetentionPolicy {
            keep_hourly: Some(4),
            ..RetentionPolicy::keep_all()
        };
        let kept: Vec<u64> = keeps(&versions, &hourly).into_keys().collect();
        assert_eq!(kept, [4, 5, 6, 7]);
        let two_in_one_hour = [(1, at(10, 1)), (2, at(10, 1)), (3, at(10, 2))];
        let kept: Vec<u64> = keeps(&two_in_one_hour, &hourly).into_keys().collect();
        assert_eq!(kept, [2, 3]);
    }

    #[test]
    fn the_newest_version_of_each_year_is_kept() {
        // Day 364 is 1970-12-31, day 365 1971-01-01, day 800 in 1972.
        let versions = [
            (1, at(300, 0)),
            (2, at(364, 23)),
            (3, at(365, 0)),
            (4, at(800, 0)),
        ];
        let yearly = RetentionPolicy {
            keep_yearly: Some(2),
            ..RetentionPolicy::keep_all()
        };
        let k = keeps(&versions, &yearly);
        assert_eq!(k.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(k[&3], [KeepReason::Yearly]);
        let three = RetentionPolicy {
            keep_yearly: Some(3),
            ..RetentionPolicy::keep_all()
        };
        assert_eq!(
            keeps(&versions, &three).into_keys().collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }
}
