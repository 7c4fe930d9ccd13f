//! `segstore demo`: the main job on the embedded local store, end to end in seconds.

use std::time::Instant;

use bytes::Bytes;
use segstore::{keys, Result, SegmentStorage, StorageBackend, StoragePath, Store};
use serde_json::json;

const COLLECTION: &str = "demo-products";

fn seg(shard: &str, name: &str) -> StoragePath {
    StoragePath::new(COLLECTION, StorageBackend::Tantivy, shard, name)
}

/// Deterministic pseudo-random bytes standing in for a segment file.
fn segment_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

/// Runs the demo and prints what happened.
pub async fn run(store: &Store, location: &str, json: bool) -> Result<()> {
    let started = Instant::now();
    let mut log = Vec::new();
    let mut say = |line: String| {
        if !json {
            println!("{line}");
        }
        log.push(line);
    };
    say(format!("segstore demo in {location}"));

    // 1. Write segment files: one commit each. The same dictionary in two shards is stored once.
    let dictionary = segment_bytes(3 * 1024 * 1024, 7);
    for (shard, name, data) in [
        ("shard_0", "seg_0001.idx", segment_bytes(2 * 1024 * 1024, 1)),
        ("shard_0", "terms.dict", dictionary.clone()),
        ("shard_1", "seg_0001.idx", segment_bytes(1024 * 1024, 2)),
        ("shard_1", "terms.dict", dictionary.clone()),
    ] {
        let info = store.write_bytes(&seg(shard, name), data.clone()).await?;
        say(format!(
            "  write  {}  ({} bytes) -> version {}",
            seg(shard, name),
            data.len(),
            info.version
        ));
    }
    let vectors = StoragePath::unsharded(COLLECTION, StorageBackend::Vector, "hnsw.bin");
    store.write(&vectors, &segment_bytes(512 * 1024, 3)).await?;
    say(format!("  write  {vectors}"));

    // 2. An atomic multi-file commit, as a search engine publishes a new segment.
    let mut tx = store.transaction(COLLECTION).await?;
    tx.put(
        &seg("shard_0", "seg_0002.idx"),
        segment_bytes(256 * 1024, 4),
    )
    .await?;
    tx.put(
        &seg("shard_0", "meta.json"),
        Bytes::from_static(br#"{"segments":["seg_0001","seg_0002"]}"#),
    )
    .await?;
    tx.delete(&seg("shard_0", "seg_0000.tmp"))?;
    let info = tx.commit().await?;
    say(format!(
        "  commit seg_0002.idx + meta.json atomically -> version {}",
        info.version
    ));

    // 3. Rename: an atomic manifest swap, no data copied.
    let from = seg("shard_1", "seg_0001.idx");
    let to = seg("shard_1", "seg_0001.merged");
    if store.exists(&from).await? {
        store.rename(&from, &to).await?;
        say(format!("  rename {from} -> {to}"));
    }

    // 4. Read back, verified against BLAKE3.
    let read = store.read(&seg("shard_0", "terms.dict")).await?;
    let verified = read == dictionary;
    say(format!(
        "  read   {} ({} bytes, hash verified: {verified})",
        seg("shard_0", "terms.dict"),
        read.len()
    ));

    // 5. List.
    let listed = store
        .list(&StoragePath::unsharded(
            COLLECTION,
            StorageBackend::Tantivy,
            "",
        ))
        .await?;
    say(format!(
        "  list   {COLLECTION}/tantivy: {} files",
        listed.len()
    ));
    for p in &listed {
        say(format!("           {p}"));
    }

    // 6. Summary.
    let head = store.head(COLLECTION).await?;
    let blobs = store.backend().list(keys::BLOBS_PREFIX).await?;
    let physical: u64 = blobs.iter().map(|b| b.size).sum();
    let logical = head.total_bytes();
    let elapsed = started.elapsed();
    if json {
        println!(
            "{}",
            json!({
                "collection": COLLECTION,
                "version": head.version,
                "files": head.file_count(),
                "logical_bytes": logical,
                "blobs": blobs.len(),
                "physical_bytes": physical,
                "verified": verified,
                "elapsed_ms": elapsed.as_millis() as u64,
                "steps": log,
            })
        );
    } else {
        println!(
            "summary: version {}, {} files, {} logical bytes in {} blobs of {} bytes (dedup), {:.2?}",
            head.version,
            head.file_count(),
            logical,
            blobs.len(),
            physical,
            elapsed
        );
    }
    Ok(())
}
