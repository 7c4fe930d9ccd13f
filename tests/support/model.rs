//! Model-based testing: random operation sequences run against a store and against a plain
//! in-memory map, with the store reopened at random points. Every observable result must
//! match. Shared by the local, memory and S3 test binaries.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use proptest::prelude::*;
use segstore::{Error, SegmentStorage, StorageBackend, StoragePath, Store};

/// Opens (or reopens) the store under test.
pub type Opener = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Store>>>>;

/// Number of proptest cases: `SEGSTORE_PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("SEGSTORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A path from a small universe, so that operations collide often.
#[derive(Debug, Clone)]
pub struct PathSpec {
    collection: u8,
    backend: u8,
    shard: u8,
    segment: u8,
}

const SEGMENTS: [&str; 6] = ["a", "ab", "abc", "b", "seg.idx", "meta.json"];

impl PathSpec {
    pub fn path(&self) -> StoragePath {
        StoragePath {
            collection: ["c1", "c2"][self.collection as usize % 2].to_owned(),
            backend: [StorageBackend::Tantivy, StorageBackend::Vector][self.backend as usize % 2],
            shard: [None, Some("s0".to_owned()), Some("s1".to_owned())][self.shard as usize % 3]
                .clone(),
            segment: SEGMENTS[self.segment as usize % SEGMENTS.len()].to_owned(),
        }
    }
}

/// Content from a few seeds and sizes that cross the inline and mmap thresholds, so that
/// identical content (dedup) is common.
#[derive(Debug, Clone)]
pub struct DataSpec {
    seed: u8,
    size: u8,
}

const SIZES: [usize; 7] = [0, 1, 100, 4096, 4097, 70_000, 300_000];

impl DataSpec {
    pub fn bytes(&self) -> Bytes {
        let len = SIZES[self.size as usize % SIZES.len()];
        let seed = self.seed % 3;
        Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<u8>>(),
        )
    }
}

#[derive(Debug, Clone)]
pub enum TxOp {
    Put(PathSpec, DataSpec),
    Delete(PathSpec),
    Rename(PathSpec, PathSpec),
}

#[derive(Debug, Clone)]
pub enum ModelOp {
    Write(PathSpec, DataSpec),
    WriteStream(PathSpec, DataSpec),
    Read(PathSpec),
    ReadRange(PathSpec, u32, u32),
    Exists(PathSpec),
    Delete(PathSpec),
    Rename(PathSpec, PathSpec),
    List(PathSpec, bool, u8),
    Transaction(u8, Vec<TxOp>),
    Reopen,
}

fn path_spec() -> impl Strategy<Value = PathSpec> {
    (0..2u8, 0..2u8, 0..3u8, 0..6u8).prop_map(|(collection, backend, shard, segment)| PathSpec {
        collection,
        backend,
        shard,
        segment,
    })
}

fn data_spec() -> impl Strategy<Value = DataSpec> {
    (0..3u8, 0..7u8).prop_map(|(seed, size)| DataSpec { seed, size })
}

fn tx_op() -> impl Strategy<Value = TxOp> {
    prop_oneof![
        3 => (path_spec(), data_spec()).prop_map(|(p, d)| TxOp::Put(p, d)),
        1 => path_spec().prop_map(TxOp::Delete),
        1 => (path_spec(), path_spec()).prop_map(|(a, b)| TxOp::Rename(a, b)),
    ]
}

/// A random operation.
pub fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        6 => (path_spec(), data_spec()).prop_map(|(p, d)| ModelOp::Write(p, d)),
        1 => (path_spec(), data_spec()).prop_map(|(p, d)| ModelOp::WriteStream(p, d)),
        4 => path_spec().prop_map(ModelOp::Read),
        2 => (path_spec(), any::<u32>(), any::<u32>()).prop_map(|(p, a, b)| ModelOp::ReadRange(p, a, b)),
        2 => path_spec().prop_map(ModelOp::Exists),
        2 => path_spec().prop_map(ModelOp::Delete),
        3 => (path_spec(), path_spec()).prop_map(|(a, b)| ModelOp::Rename(a, b)),
        2 => (path_spec(), any::<bool>(), 0..4u8).prop_map(|(p, s, l)| ModelOp::List(p, s, l)),
        2 => (0..2u8, prop::collection::vec(tx_op(), 1..5)).prop_map(|(c, ops)| ModelOp::Transaction(c, ops)),
        1 => Just(ModelOp::Reopen),
    ]
}

type Model = BTreeMap<StoragePath, Bytes>;

/// Forces every path of a transaction into one collection.
fn in_collection(spec: &PathSpec, collection: u8) -> StoragePath {
    PathSpec {
        collection,
        ..spec.clone()
    }
    .path()
}

/// Runs `ops` against the store and the model; panics on the first difference.
pub async fn run(open: &Opener, ops: Vec<ModelOp>) {
    let mut store = open().await;
    let mut model = Model::new();
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        match op {
            ModelOp::Write(p, d) => {
                let (path, data) = (p.path(), d.bytes());
                SegmentStorage::write(&store, &path, &data)
                    .await
                    .expect(&ctx);
                model.insert(path, data);
            }
            ModelOp::WriteStream(p, d) => {
                let (path, data) = (p.path(), d.bytes());
                store.write_stream(&path, &data[..]).await.expect(&ctx);
                model.insert(path, data);
            }
            ModelOp::Read(p) => {
                let path = p.path();
                let got = SegmentStorage::read(&store, &path).await;
                match model.get(&path) {
                    Some(want) => assert_eq!(got.expect(&ctx), want.to_vec(), "{ctx}"),
                    None => assert!(matches!(got, Err(Error::NotFound { .. })), "{ctx}: {got:?}"),
                }
            }
            ModelOp::ReadRange(p, a, b) => {
                let path = p.path();
                let got = store
                    .read_range(&path, a as u64 % 400_000..b as u64 % 400_000)
                    .await;
                match model.get(&path) {
                    None => assert!(matches!(got, Err(Error::NotFound { .. })), "{ctx}: {got:?}"),
                    Some(want) => {
                        let (start, end) = (a as usize % 400_000, b as usize % 400_000);
                        if start <= end && end <= want.len() {
                            assert_eq!(got.expect(&ctx), want.slice(start..end), "{ctx}");
                        } else {
                            assert!(
                                matches!(got, Err(Error::OutOfRange { .. })),
                                "{ctx}: {got:?}"
                            );
                        }
                    }
                }
            }
            ModelOp::Exists(p) => {
                let path = p.path();
                let got = SegmentStorage::exists(&store, &path).await.expect(&ctx);
                assert_eq!(got, model.contains_key(&path), "{ctx}");
            }
            ModelOp::Delete(p) => {
                let path = p.path();
                SegmentStorage::delete(&store, &path).await.expect(&ctx);
                model.remove(&path);
            }
            ModelOp::Rename(a, b) => {
                let from = a.path();
                let to = PathSpec {
                    collection: a.collection,
                    ..b
                }
                .path();
                let got = SegmentStorage::rename(&store, &from, &to).await;
                match model.remove(&from) {
                    Some(data) => {
                        got.expect(&ctx);
                        model.insert(to, data);
                    }
                    None => assert!(matches!(got, Err(Error::NotFound { .. })), "{ctx}: {got:?}"),
                }
            }
            ModelOp::List(p, sharded, prefix_len) => {
                let mut prefix = p.path();
                if !sharded {
                    prefix.shard = None;
                }
                prefix.segment = prefix.segment.chars().take(prefix_len as usize).collect();
                let got = SegmentStorage::list(&store, &prefix).await.expect(&ctx);
                let want: Vec<StoragePath> = model
                    .keys()
                    .filter(|k| prefix.prefix_matches(k))
                    .cloned()
                    .collect();
                assert_eq!(got, want, "{ctx}");
            }
            ModelOp::Transaction(collection, tx_ops) => {
                let name = ["c1", "c2"][collection as usize % 2];
                let mut tx = store.transaction(name).await.expect(&ctx);
                let mut next = model.clone();
                let mut missing_source = false;
                for op in &tx_ops {
                    match op {
                        TxOp::Put(p, d) => {
                            let (path, data) = (in_collection(p, collection), d.bytes());
                            tx.put(&path, data.clone()).await.expect(&ctx);
                            next.insert(path, data);
                        }
                        TxOp::Delete(p) => {
                            let path = in_collection(p, collection);
                            tx.delete(&path).expect(&ctx);
                            next.remove(&path);
                        }
                        TxOp::Rename(a, b) => {
                            let (from, to) =
                                (in_collection(a, collection), in_collection(b, collection));
                            tx.rename(&from, &to).expect(&ctx);
                            match next.remove(&from) {
                                Some(data) => {
                                    next.insert(to, data);
                                }
                                None => missing_source = true,
                            }
                        }
                    }
                }
                let got = tx.commit().await;
                if missing_source {
                    // All or nothing: the failed rename leaves the whole commit unapplied.
                    assert!(matches!(got, Err(Error::NotFound { .. })), "{ctx}: {got:?}");
                } else {
                    got.expect(&ctx);
                    model = next;
                }
            }
            ModelOp::Reopen => {
                drop(store);
                store = open().await;
            }
        }
    }
    // Finally, a fresh handle sees exactly the model.
    drop(store);
    let store = open().await;
    for (path, want) in &model {
        let got = SegmentStorage::read(&store, path)
            .await
            .expect("final read");
        assert_eq!(&got, want, "final state of {path}");
    }
    for collection in ["c1", "c2"] {
        for backend in [StorageBackend::Tantivy, StorageBackend::Vector] {
            let prefix = StoragePath::unsharded(collection, backend, "");
            let got = SegmentStorage::list(&store, &prefix)
                .await
                .expect("final list");
            let want: Vec<_> = model
                .keys()
                .filter(|k| prefix.prefix_matches(k))
                .cloned()
                .collect();
            assert_eq!(got, want, "final listing of {collection}/{backend}");
        }
    }
}
