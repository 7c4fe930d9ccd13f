//! Calendar retention (`keep_daily`, `keep_weekly`, `keep_monthly`, as restic's): which
//! versions survive, with the versions' recorded times set on a virtual clock's store (no
//! sleeping), and the reasons retention gives for each kept version.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use segstore::backend::memory::MemoryBackend;
use segstore::clock::TokioClock;
use segstore::gc::{KeepReason, RetentionPolicy};
use segstore::{StorageBackend, StoragePath, Store, StoreOptions};

/// 2027-01-15 08:00 UTC, a Friday.
const NOW: u64 = 1_800_000_000;

/// `day` days since the epoch (UTC), at `hour`.
fn at(day: u64, hour: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(day * 86_400 + hour * 3600)
}

#[tokio::test(start_paused = true)]
async fn the_newest_version_of_each_recent_day_week_and_month_survives() {
    let clock = Arc::new(TokioClock::new(UNIX_EPOCH + Duration::from_secs(NOW)));
    let backend = MemoryBackend::with_clock(clock);
    let store = Store::new(Arc::new(backend.clone()), StoreOptions::default());
    let path = StoragePath::new("c", StorageBackend::Tantivy, "s", "f");
    // Day 20767 is 2026-11-10, 20807 Sunday 2026-12-20, 20829 Monday 2027-01-11.
    let stored = [
        at(20_767, 12),
        at(20_807, 10),
        at(20_807, 18),
        at(20_829, 9),
        at(20_830, 9),
        at(20_831, 9),
        at(20_831, 15),
        at(20_832, 9),
    ];
    for (i, when) in stored.iter().enumerate() {
        let v = i as u64 + 1;
        store
            .write_bytes(&path, format!("version {v}").into())
            .await
            .unwrap();
        backend
            .set_modified(&segstore::keys::manifest("c", v), *when)
            .unwrap();
    }
    let policy = RetentionPolicy {
        keep_daily: Some(2),
        keep_weekly: Some(2),
        keep_monthly: Some(3),
        ..RetentionPolicy::keep_all()
    };
    let dry = store.apply_retention("c", &policy, true).await.unwrap();
    // Daily: 01-14 (8), 01-13 (7, the later of two); weekly: this week (8), the week
    // ending Sunday 12-20 (3); monthly: January (8), December (3), November (1).
    assert_eq!(dry.kept, [1, 3, 7, 8]);
    assert_eq!(dry.deleted, [2, 4, 5, 6]);
    assert_eq!(dry.reasons[&1], [KeepReason::Monthly]);
    assert_eq!(dry.reasons[&3], [KeepReason::Weekly, KeepReason::Monthly]);
    assert_eq!(dry.reasons[&7], [KeepReason::Daily]);
    assert_eq!(
        dry.reasons[&8],
        [
            KeepReason::Latest,
            KeepReason::Daily,
            KeepReason::Weekly,
            KeepReason::Monthly
        ]
    );
    assert_eq!(
        store.versions("c").await.unwrap().len(),
        8,
        "a dry run deletes nothing"
    );
    let real = store.apply_retention("c", &policy, false).await.unwrap();
    assert_eq!(real.deleted, dry.deleted);
    let left: Vec<u64> = store
        .versions("c")
        .await
        .unwrap()
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(left, [1, 3, 7, 8]);
    // The survivors below the boundary stay readable, like pinned versions.
    let view = store
        .view("c", &segstore::Target::Version(3))
        .await
        .unwrap();
    assert_eq!(&view.read_bytes(&path).await.unwrap()[..], b"version 3");
}

#[tokio::test(start_paused = true)]
async fn calendar_rules_add_to_keep_last_and_snapshots() {
    let clock = Arc::new(TokioClock::new(UNIX_EPOCH + Duration::from_secs(NOW)));
    let backend = MemoryBackend::with_clock(clock);
    let store = Store::new(Arc::new(backend.clone()), StoreOptions::default());
    let path = StoragePath::new("c", StorageBackend::Tantivy, "s", "f");
    for v in 1..=6u64 {
        store
            .write_bytes(&path, vec![v as u8; 3].into())
            .await
            .unwrap();
        // Versions 1-6 on six consecutive days ending yesterday.
        backend
            .set_modified(&segstore::keys::manifest("c", v), at(20_826 + v, 12))
            .unwrap();
    }
    store
        .create_snapshot("c", "pin", Some(1), None)
        .await
        .unwrap();
    let policy = RetentionPolicy {
        keep_last: Some(2),
        keep_daily: Some(3),
        ..RetentionPolicy::keep_all()
    };
    let r = store.apply_retention("c", &policy, false).await.unwrap();
    assert_eq!(r.kept, [1, 4, 5, 6]);
    assert_eq!(r.deleted, [2, 3]);
    assert_eq!(r.reasons[&1], [KeepReason::Snapshot("pin".into())]);
    assert_eq!(r.reasons[&4], [KeepReason::Daily]);
    assert_eq!(r.reasons[&5], [KeepReason::Last, KeepReason::Daily]);
    assert_eq!(
        r.reasons[&6],
        [KeepReason::Latest, KeepReason::Last, KeepReason::Daily]
    );
}
