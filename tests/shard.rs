//! Shard transactions: a Tantivy commit, vector files and graph files in one manifest
//! version. All or nothing, `Transaction`'s conflict rules, crash points, concurrent
//! snapshots, and readers of one version (local, a second store object, S3 on moto).
//!
//! Every shard commit `g` writes one document and the commit payload `g` to Tantivy, and
//! files whose content starts with `g` to the vector and graph families: a view is
//! consistent when all of them say the same generation.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use segstore::backend::fault::{Fault, FaultBackend};
use segstore::backend::memory::MemoryBackend;
use segstore::{
    Error, S3Storage, SegmentStorage, ShardView, ShardWriter, StorageBackend, Store, StoreOptions,
    Target,
};
use tantivy::schema::{Field, Schema, INDEXED, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

const COLLECTION: &str = "prism";
const SHARD: &str = "shard_0";
const FILES: [(StorageBackend, &str); 3] = [
    (StorageBackend::Vector, "hnsw.bin"),
    (StorageBackend::Graph, "nodes.bin"),
    (StorageBackend::Graph, "edges.bin"),
];

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// [`options`] with strict read freshness, for the tests where one store object stands
/// for another process whose commits must be seen at once.
fn strict() -> StoreOptions {
    StoreOptions {
        read_freshness: segstore::Freshness::Strict,
        ..options()
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_writer_stall: Duration::from_millis(200),
        freshen_after: Duration::ZERO,
        version_min_age: Duration::ZERO,
        ..StoreOptions::default()
    }
}

fn schema() -> (Schema, Field, Field) {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("gen", INDEXED | STORED);
    let body = builder.add_text_field("body", TEXT | STORED);
    (builder.build(), id, body)
}

/// Family file content of generation `gen`: the generation, then filler (some files are
/// inline, some blobs).
fn content(gen: u64, len: usize) -> Bytes {
    let mut data = gen.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (i as u8) ^ (gen as u8)));
    Bytes::from(data)
}

struct Shard {
    writer: ShardWriter,
    index_writer: IndexWriter,
    fields: (Field, Field),
}

fn open_shard(storage: Arc<dyn SegmentStorage>) -> Shard {
    try_open_shard(storage).expect("open shard")
}

fn try_open_shard(storage: Arc<dyn SegmentStorage>) -> Result<Shard, String> {
    let writer = block(ShardWriter::open(storage, COLLECTION, SHARD)).map_err(|e| e.to_string())?;
    let (schema, gen, body) = schema();
    let index = Index::open_or_create(writer.directory(), schema).map_err(|e| e.to_string())?;
    let index_writer = index
        .writer_with_num_threads(1, 15_000_000)
        .map_err(|e| e.to_string())?;
    Ok(Shard {
        writer,
        index_writer,
        fields: (gen, body),
    })
}

/// One shard commit of generation `gen`, from sync code.
fn shard_commit(shard: &mut Shard, gen: u64) -> segstore::Result<u64> {
    let tantivy = |e: tantivy::TantivyError| Error::backend("tantivy commit", e.to_string());
    let (gen_field, body) = shard.fields;
    shard
        .index_writer
        .add_document(doc!(gen_field => gen, body => format!("document {gen}")))
        .map_err(tantivy)?;
    let mut prepared = shard.index_writer.prepare_commit().map_err(tantivy)?;
    prepared.set_payload(&gen.to_string());
    prepared.commit().map_err(tantivy)?;
    let mut tx = shard.writer.begin_blocking()?;
    for (i, (backend, name)) in FILES.iter().enumerate() {
        let len = [10, 6000, 70_000][i];
        tx.put_blocking(&shard.writer.path(*backend, name), content(gen, len))?;
    }
    Ok(tx.commit_blocking()?.version)
}

/// The generation every family of `view` shows, or an error naming the disagreement.
/// `None`: the shard does not exist at that version (none of its families do).
fn generation(view: &ShardView) -> Result<Option<u64>, String> {
    let mut gens = Vec::new();
    for (backend, name) in FILES {
        match block(view.read(backend, name)) {
            Ok(bytes) => gens.push(Some(u64::from_le_bytes(bytes[..8].try_into().unwrap()))),
            Err(Error::NotFound { .. }) => gens.push(None),
            Err(e) => return Err(format!("v{}: reading {name}: {e}", view.version())),
        }
    }
    let tantivy = if block(view.list(StorageBackend::Tantivy))
        .map_err(|e| e.to_string())?
        .iter()
        .any(|n| n == "meta.json")
    {
        let index = view.index().map_err(|e| e.to_string())?;
        let payload = index.load_metas().map_err(|e| e.to_string())?.payload;
        // No payload: the index as created, before any commit of a generation.
        let gen: u64 = match payload {
            Some(p) => p.parse().map_err(|_| format!("payload {p:?}"))?,
            None => 0,
        };
        let reader = index.reader().map_err(|e| e.to_string())?;
        let docs = reader.searcher().num_docs();
        if docs != gen {
            return Err(format!(
                "v{}: payload {gen} but {docs} documents",
                view.version()
            ));
        }
        Some(gen)
    } else {
        None
    };
    gens.push(tantivy);
    if gens.iter().any(|g| *g != gens[0]) {
        return Err(format!(
            "v{}: families out of step (vector, nodes, edges, tantivy): {gens:?}",
            view.version()
        ));
    }
    Ok(gens[0])
}

fn view_at(storage: &dyn SegmentStorage, version: u64) -> ShardView {
    block(ShardView::at(
        storage,
        COLLECTION,
        SHARD,
        &Target::Version(version),
    ))
    .expect("view")
}

#[test]
fn a_tantivy_commit_waits_for_the_shard_and_lands_with_its_other_files() {
    let store: Arc<dyn SegmentStorage> =
        Arc::new(Store::new(Arc::new(MemoryBackend::new()), options()));
    let mut shard = open_shard(store.clone());
    let core = shard.writer.store().clone();
    let before = block(core.head(COLLECTION)).unwrap().version;
    shard
        .index_writer
        .add_document(doc!(shard.fields.0 => 1u64))
        .unwrap();
    let mut prepared = shard.index_writer.prepare_commit().unwrap();
    prepared.set_payload("1");
    prepared.commit().unwrap();
    assert_eq!(
        block(core.head(COLLECTION)).unwrap().version,
        before,
        "a held tantivy commit created a version on its own"
    );
    assert!(shard
        .writer
        .pending_tantivy()
        .contains(&"meta.json".to_owned()));
    let mut tx = shard.writer.begin_blocking().unwrap();
    for (backend, name) in FILES {
        tx.put_blocking(&shard.writer.path(backend, name), content(1, 100))
            .unwrap();
    }
    let version = tx.commit_blocking().unwrap().version;
    assert_eq!(version, before + 1, "one version for the whole shard");
    assert!(shard.writer.pending_tantivy().is_empty());
    assert_eq!(generation(&view_at(store.as_ref(), version)), Ok(Some(1)));
    // The next shard commit: the old version still reads generation 1 everywhere.
    let next = shard_commit(&mut shard, 2).unwrap();
    assert_eq!(generation(&view_at(store.as_ref(), version)), Ok(Some(1)));
    assert_eq!(generation(&view_at(store.as_ref(), next)), Ok(Some(2)));
}

#[test]
fn a_shard_commit_from_async_code() {
    block(async {
        let store: Arc<dyn SegmentStorage> =
            Arc::new(Store::new(Arc::new(MemoryBackend::new()), options()));
        let writer = ShardWriter::open(store.clone(), COLLECTION, SHARD)
            .await
            .unwrap();
        let directory = writer.directory();
        // tantivy is synchronous: its commit runs on the blocking pool.
        tokio::task::spawn_blocking(move || {
            let (schema, gen, _) = schema();
            let index = Index::open_or_create(directory, schema).unwrap();
            let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
            w.add_document(doc!(gen => 1u64)).unwrap();
            let mut prepared = w.prepare_commit().unwrap();
            prepared.set_payload("1");
            prepared.commit().unwrap();
        })
        .await
        .unwrap();
        let mut tx = writer.begin().await.unwrap();
        for (backend, name) in FILES {
            tx.put(&writer.path(backend, name), content(1, 5000))
                .await
                .unwrap();
        }
        let version = tx.commit().await.unwrap().version;
        let view = ShardView::latest(store.as_ref(), COLLECTION, SHARD)
            .await
            .unwrap();
        assert_eq!(view.version(), version);
        let file = view
            .open_file(StorageBackend::Vector, "hnsw.bin")
            .await
            .unwrap();
        assert_eq!(file.read_verified().await.unwrap(), content(1, 5000));
        tokio::task::spawn_blocking(move || assert_eq!(generation(&view), Ok(Some(1))))
            .await
            .unwrap();
    });
}

#[test]
fn a_conflicting_shard_commit_lands_nothing_and_unrelated_changes_merge() {
    let store: Arc<dyn SegmentStorage> =
        Arc::new(Store::new(Arc::new(MemoryBackend::new()), options()));
    let mut shard = open_shard(store.clone());
    let v1 = shard_commit(&mut shard, 1).unwrap();
    let core = shard.writer.store().clone();

    // Another writer changes the vector file after the transaction began: conflict, and
    // neither the tantivy commit nor the graph files land.
    shard
        .index_writer
        .add_document(doc!(shard.fields.0 => 2u64))
        .unwrap();
    shard.index_writer.commit().unwrap();
    let mut tx = shard.writer.begin_blocking().unwrap();
    let vector = shard.writer.path(StorageBackend::Vector, "hnsw.bin");
    tx.put_blocking(&vector, content(2, 10)).unwrap();
    tx.put_blocking(
        &shard.writer.path(StorageBackend::Graph, "edges.bin"),
        content(2, 10),
    )
    .unwrap();
    let other = shard.writer.path(StorageBackend::Graph, "other-shard-data");
    block(core.write_bytes(&other, Bytes::from_static(b"unrelated"))).unwrap();
    block(core.write_bytes(&vector, Bytes::from_static(b"someone else"))).unwrap();
    let head_before = block(core.head(COLLECTION)).unwrap().version;
    match tx.commit_blocking() {
        Err(Error::Conflict { path, .. }) => assert!(path.ends_with("hnsw.bin"), "{path}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(block(core.head(COLLECTION)).unwrap().version, head_before);
    let view = view_at(store.as_ref(), head_before);
    assert_eq!(
        block(view.read(StorageBackend::Graph, "edges.bin")).unwrap(),
        content(1, 70_000)
    );
    let metas = view.index().unwrap().load_metas().unwrap();
    assert_eq!(
        metas.payload.as_deref(),
        Some("1"),
        "the tantivy commit landed alone"
    );
    assert!(
        !shard.writer.pending_tantivy().is_empty(),
        "tantivy changes stay pending"
    );

    // A fresh transaction (unrelated paths changed meanwhile: merged) commits them all.
    let mut tx = shard.writer.begin_blocking().unwrap();
    tx.put_blocking(&vector, content(2, 10)).unwrap();
    for (backend, name) in &FILES[1..] {
        tx.put_blocking(&shard.writer.path(*backend, name), content(2, 10))
            .unwrap();
    }
    let v = tx.commit_blocking().unwrap().version;
    assert!(v > v1);
    let view = view_at(store.as_ref(), v);
    assert_eq!(
        block(view.read(StorageBackend::Graph, "other-shard-data")).unwrap(),
        "unrelated"
    );
    assert_eq!(view.index().unwrap().load_metas().unwrap().payload, None);
    assert_eq!(
        view.index()
            .unwrap()
            .reader()
            .unwrap()
            .searcher()
            .num_docs(),
        2
    );
}

#[test]
fn another_tantivy_writer_commit_since_the_writer_loaded_is_a_conflict() {
    let memory = MemoryBackend::new();
    let open =
        || -> Arc<dyn SegmentStorage> { Arc::new(Store::new(Arc::new(memory.clone()), strict())) };
    let mut first = open_shard(open());
    shard_commit(&mut first, 1).unwrap();
    // A second writer on the same shard through another store object (as another process).
    let mut second = open_shard(open());
    let v2 = shard_commit(&mut second, 2).unwrap();
    // The first writer's index was loaded at v1: its transaction begins at v2, yet its
    // meta.json must not replace the one committed in v2.
    first
        .index_writer
        .add_document(doc!(first.fields.0 => 3u64))
        .unwrap();
    first.index_writer.commit().unwrap();
    let tx = first.writer.begin_blocking().unwrap();
    assert_eq!(tx.base_version(), v2);
    match tx.commit_blocking() {
        Err(Error::Conflict { path, reason, .. }) => {
            assert!(path.contains("/tantivy/shard_0/"), "{path}");
            assert!(reason.contains("tantivy writer's base"), "{reason}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let store = open();
    assert_eq!(generation(&view_at(store.as_ref(), v2)), Ok(Some(2)));
    assert_eq!(block(store_head(&store)), v2);
}

async fn store_head(storage: &Arc<dyn SegmentStorage>) -> u64 {
    segstore::core_store(storage.as_ref())
        .unwrap()
        .head(COLLECTION)
        .await
        .unwrap()
        .version
}

const CRASH_GENERATIONS: u64 = 3;

/// Runs shard commits 1..=CRASH_GENERATIONS until the first error; returns how many were
/// acknowledged.
fn crash_workload(storage: Arc<dyn SegmentStorage>) -> u64 {
    let Ok(mut shard) = try_open_shard(storage) else {
        return 0;
    };
    for gen in 1..=CRASH_GENERATIONS {
        if shard_commit(&mut shard, gen).is_err() {
            return gen - 1;
        }
    }
    CRASH_GENERATIONS
}

/// After a crash at backend operation `k`: every version a reader can open shows all
/// families at one generation, generations only grow, and the latest is the acknowledged
/// one or the one in flight.
fn check_crash_point(k: u64, applied: bool) -> Result<(), String> {
    let memory = MemoryBackend::new();
    let fault = FaultBackend::new(Arc::new(memory.clone()));
    fault.set_fault(Fault::CrashAt { op: k, applied });
    let acked = crash_workload(Arc::new(Store::new(Arc::new(fault), options())));
    let recovered: Arc<dyn SegmentStorage> = Arc::new(Store::new(Arc::new(memory), options()));
    let head = match block(
        segstore::core_store(recovered.as_ref())
            .unwrap()
            .head(COLLECTION),
    ) {
        Ok(root) => root.version,
        Err(e) => return Err(format!("crash at {k}: head after recovery: {e}")),
    };
    let mut last = 0;
    for version in 1..=head {
        let view = view_at(recovered.as_ref(), version);
        let gen = generation(&view).map_err(|e| format!("crash at {k} ({applied}): {e}"))?;
        let gen = gen.unwrap_or(0);
        if gen < last {
            return Err(format!(
                "crash at {k}: v{version} went back to generation {gen}"
            ));
        }
        last = gen;
    }
    if last != acked && last != acked + 1 {
        return Err(format!(
            "crash at {k} (applied: {applied}): latest generation {last}, {acked} acknowledged"
        ));
    }
    Ok(())
}

#[test]
fn no_crash_point_lets_a_reader_see_the_families_out_of_step() {
    // How many backend operations the whole workload takes.
    let memory = MemoryBackend::new();
    let counter = FaultBackend::new(Arc::new(memory));
    let acked = crash_workload(Arc::new(Store::new(Arc::new(counter.clone()), options())));
    assert_eq!(acked, CRASH_GENERATIONS);
    let total = counter.ops();
    // SEGSTORE_CRASH_POINTS: how many crash points to try (0: all).
    let wanted: u64 = std::env::var("SEGSTORE_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let stride = if wanted == 0 {
        1
    } else {
        total.div_ceil(wanted).max(1)
    };
    let mut failures = Vec::new();
    let mut tried = 0;
    for k in (0..total).step_by(stride as usize) {
        for applied in [false, true] {
            tried += 1;
            if let Err(e) = check_crash_point(k, applied) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} crash points failed: {failures:#?}",
        failures.len()
    );
    println!("{tried} crash points over {total} operations");
}

#[test]
fn a_snapshot_taken_during_shard_commits_captures_one_consistent_shard() {
    let store = Store::new(Arc::new(MemoryBackend::new()), options());
    let storage: Arc<dyn SegmentStorage> = Arc::new(store.clone());
    let mut shard = open_shard(storage.clone());
    let committer = std::thread::spawn(move || {
        for gen in 1..=8 {
            shard_commit(&mut shard, gen).expect("shard commit");
        }
    });
    let mut names = Vec::new();
    block(async {
        let mut i = 0;
        while !committer.is_finished() || i == 0 {
            let name = format!("snap-{i}");
            match store.create_snapshot(COLLECTION, &name, None, None).await {
                Ok(_) => names.push(name),
                Err(Error::NotFound { .. }) => {} // no version yet
                Err(e) => panic!("snapshot: {e}"),
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    committer.join().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        let target = Target::Snapshot(name.clone());
        let view = block(ShardView::at(storage.as_ref(), COLLECTION, SHARD, &target)).unwrap();
        let gen = generation(&view).unwrap_or_else(|e| panic!("snapshot {name}: {e}"));
        seen.insert(gen);
    }
    assert!(!names.is_empty());
    println!("{} snapshots, generations seen: {seen:?}", names.len());
}

#[test]
fn readers_of_a_version_on_s3_see_that_version_from_another_store() {
    let Some(config) = block(support::moto::fresh_bucket()) else {
        eprintln!("moto unavailable: skipped");
        return;
    };
    let connect = || -> Arc<dyn SegmentStorage> {
        Arc::new(
            block(S3Storage::connect_with(
                config.clone(),
                support::fast_options(),
            ))
            .unwrap(),
        )
    };
    let mut shard = open_shard(connect());
    let v1 = shard_commit(&mut shard, 1).unwrap();
    let v2 = shard_commit(&mut shard, 2).unwrap();
    // Another store object, as another process would have.
    let reader = connect();
    let old = view_at(reader.as_ref(), v1);
    let index = old.index().unwrap();
    let searcher = index.reader().unwrap().searcher();
    assert_eq!(generation(&view_at(reader.as_ref(), v2)), Ok(Some(2)));
    let v3 = shard_commit(&mut shard, 3).unwrap();
    // The view opened at v1 still reads v1 everywhere, after v3 landed.
    assert_eq!(searcher.num_docs(), 1);
    assert_eq!(generation(&old), Ok(Some(1)));
    assert_eq!(generation(&view_at(reader.as_ref(), v3)), Ok(Some(3)));
    // edges.bin is a blob (not inline in the manifest): on plain S3, read by range.
    let file = block(old.open_file(StorageBackend::Graph, "edges.bin")).unwrap();
    assert!(file.resident().is_none(), "plain S3 has no local copy");
    assert_eq!(
        block(file.read_range(0..8)).unwrap(),
        1u64.to_le_bytes().as_slice()
    );
}
