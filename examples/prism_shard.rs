//! A Prism shard in one version: a Tantivy index, an HNSW vector index and a document
//! graph, committed together through segstore, snapshotted, broken, restored and queried.
//!
//! ```sh
//! cargo run --example prism_shard                        # local store in ./prism-shard-example
//! cargo run --example prism_shard -- --config FILE       # S3 or the cached tier
//! cargo run --example prism_shard -- --data-dir DIR --query "snapshot restore"
//! ```
//!
//! What it does, printing each step and its time:
//!
//! 1. Reads a real corpus: segstore's own `README.md` and `docs/*.md`, split into paragraphs.
//! 2. Indexes the paragraphs with Tantivy through [`ShardWriter::directory`]: the Tantivy
//!    commit is held, not a version of its own.
//! 3. Embeds each paragraph as a deterministic hashed bag-of-words vector (a 256-bit
//!    SimHash of its words, compared by Hamming distance; no ML model) and builds an HNSW
//!    index over them with the `instant-distance` crate. Chosen because it is pure Rust (no
//!    C or C++ toolchain, unlike `usearch` or `hnswlib` bindings), small, serde-serialisable
//!    (so the index is one file segstore stores), and maintained by the team that runs it
//!    in production for instantdomainsearch.com. (`hnsw_rs` is also pure Rust, but its
//!    dump and reload go through directories of files, not bytes a store hands back.)
//! 4. Builds a graph of links between paragraphs: the next paragraph of the same section,
//!    and markdown links to another document (to that document's first paragraph).
//! 5. Commits the Tantivy commit, `vector/hnsw.bin`, `graph/nodes.bin` and
//!    `graph/edges.bin` as one manifest version with a [`ShardTransaction`].
//! 6. Snapshots that version, breaks the shard (deletes a Tantivy segment file and the
//!    vector index, overwrites the graph edges), shows the breakage, and restores.
//! 7. Opens the restored version with a [`ShardView`]: the Tantivy index pinned to it, and
//!    the vector index through [`ShardView::open_file`], a memory map of the stored blob on
//!    local disk and in the cached tier's L1 (zero-copy: the HNSW is deserialised straight
//!    from the mapping, never read into a buffer first). On plain S3 there is no local copy
//!    and the file is read whole, once, verified.
//! 8. Runs a hybrid query: BM25 hits and vector hits fused by reciprocal rank, then the
//!    graph neighbours of the best hits added.
//!
//! Without `--config`, everything lives in `./prism-shard-example` (or `--data-dir`): the
//! example creates that directory, a marker file and the store (`store/`) in it, and
//! refuses a directory it did not create.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "prism_shard/corpus.rs"]
mod corpus;

use bytes::Bytes;
use corpus::{corpus, embed, Corpus, Embedding, Node, DIMS};
use instant_distance::{Builder, HnswMap, Search};
use segstore::clock::{self, Stamp};
use segstore::{
    Error, LocalStorage, Result, SegmentStorage, ShardView, ShardWriter, StorageBackend,
    StorageConfig, Target,
};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, Value, FAST, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexWriter, TantivyDocument};

const COLLECTION: &str = "prism_docs";
const SHARD: &str = "shard_0";
const MARKER: &str = ".prism-shard-example";
const DEFAULT_QUERY: &str = "crash safe atomic commit of a snapshot";

struct Timer(Stamp);

impl Timer {
    fn start() -> Timer {
        Timer(Stamp::now(clock::system().as_ref()))
    }
    fn ms(&self) -> f64 {
        self.0.elapsed(clock::system().as_ref()).as_secs_f64() * 1000.0
    }
}

fn step(what: &str, timer: Timer) {
    println!("{what:<78} {:>8.1} ms", timer.ms());
}

fn tantivy_err(e: tantivy::TantivyError) -> Error {
    Error::backend("tantivy", e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    postcard::to_allocvec(value)
        .map(Bytes::from)
        .map_err(|e| Error::backend("encoding", e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Corrupt {
        object: what.to_owned(),
        expected: "a postcard encoding".into(),
        actual: e.to_string(),
    })
}

struct Args {
    config: Option<PathBuf>,
    data_dir: PathBuf,
    query: String,
}

fn args() -> std::result::Result<Args, String> {
    let mut args = Args {
        config: None,
        data_dir: PathBuf::from("prism-shard-example"),
        query: DEFAULT_QUERY.to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => args.config = Some(PathBuf::from(value()?)),
            "--data-dir" => args.data_dir = PathBuf::from(value()?),
            "--query" => args.query = value()?,
            other => return Err(format!("unknown argument {other:?}; see the doc comment")),
        }
    }
    Ok(args)
}

/// The example's own local store: a directory it created (marked), never another.
async fn own_local_store(dir: &Path) -> Result<Arc<dyn SegmentStorage>> {
    let marker = dir.join(MARKER);
    let io =
        |e: std::io::Error| Error::backend(format!("preparing {}", dir.display()), e.to_string());
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty && !marker.exists() {
            return Err(Error::InvalidConfig(format!(
                "{} exists and was not created by this example; pass --data-dir",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&marker, b"created by segstore's prism_shard example\n").map_err(io)?;
    Ok(Arc::new(LocalStorage::open(dir.join("store")).await?))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("prism_shard: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = args().map_err(Error::InvalidConfig)?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| Error::backend("tokio", e.to_string()))?;
    let total = Timer::start();

    let t = Timer::start();
    let (storage, label) = match &args.config {
        Some(file) => {
            let config = StorageConfig::load(file)?;
            let kind = format!("{:?}", config.storage.backend).to_lowercase();
            (
                rt.block_on(config.open())?,
                format!("{kind} (from {})", file.display()),
            )
        }
        None => (
            rt.block_on(own_local_store(&args.data_dir))?,
            format!("local ({})", args.data_dir.display()),
        ),
    };
    step(&format!("store: {label}"), t);

    // 1. The corpus.
    let t = Timer::start();
    let Corpus {
        paragraphs,
        edges,
        bytes,
    } = corpus(Path::new(env!("CARGO_MANIFEST_DIR")))?;
    step(
        &format!(
            "corpus: {} paragraphs of segstore's docs ({} KiB)",
            paragraphs.len(),
            bytes / 1024
        ),
        t,
    );

    // 2. Tantivy, through the shard's held directory.
    let t = Timer::start();
    let writer = rt.block_on(ShardWriter::open(storage.clone(), COLLECTION, SHARD))?;
    let mut schema = Schema::builder();
    let id = schema.add_u64_field("id", STORED | FAST);
    let file = schema.add_text_field("file", STRING | STORED);
    let body = schema.add_text_field("body", TEXT | STORED);
    let index = Index::open_or_create(writer.directory(), schema.build()).map_err(tantivy_err)?;
    let mut index_writer: IndexWriter = index.writer(50_000_000).map_err(tantivy_err)?;
    index_writer.delete_all_documents().map_err(tantivy_err)?; // a re-run re-indexes
    for (i, (node, text)) in paragraphs.iter().enumerate() {
        let document = doc!(id => i as u64, file => node.file.clone(), body => text.clone());
        index_writer.add_document(document).map_err(tantivy_err)?;
    }
    index_writer.commit().map_err(tantivy_err)?;
    let held = writer.pending_tantivy().len();
    step(
        &format!(
            "tantivy: {} documents, commit held ({held} files pending)",
            paragraphs.len()
        ),
        t,
    );

    // 3. HNSW over hashed bag-of-words embeddings.
    let t = Timer::start();
    let points: Vec<Embedding> = paragraphs.iter().map(|(_, text)| embed(text)).collect();
    let ids: Vec<u32> = (0..points.len() as u32).collect();
    let hnsw: HnswMap<Embedding, u32> = Builder::default()
        .seed(18)
        .ef_construction(64)
        .build(points, ids);
    let hnsw_bytes = encode(&hnsw)?;
    step(
        &format!(
            "vector: HNSW over {DIMS}-bit embeddings, {} KiB",
            hnsw_bytes.len() / 1024
        ),
        t,
    );

    // 4. The graph.
    let nodes: Vec<Node> = paragraphs.iter().map(|(n, _)| n.clone()).collect();
    let (nodes_bytes, edges_bytes) = (encode(&nodes)?, encode(&edges)?);

    // 5. One version for the whole shard.
    let t = Timer::start();
    let mut tx = writer.begin_blocking()?;
    tx.put_blocking(&writer.path(StorageBackend::Vector, "hnsw.bin"), hnsw_bytes)?;
    tx.put_blocking(
        &writer.path(StorageBackend::Graph, "nodes.bin"),
        nodes_bytes,
    )?;
    tx.put_blocking(
        &writer.path(StorageBackend::Graph, "edges.bin"),
        edges_bytes,
    )?;
    let committed = tx.commit_blocking()?.version;
    drop(index_writer);
    step(
        &format!(
            "commit: version {committed} = tantivy + vector/hnsw.bin + graph ({} edges)",
            edges.len()
        ),
        t,
    );

    // 6. Snapshot, break, restore.
    let store = writer.store().clone();
    let snapshot = format!("before-break-v{committed}");
    let t = Timer::start();
    let hour = std::time::Duration::from_secs(3600);
    rt.block_on(store.create_snapshot(COLLECTION, &snapshot, Some(committed), Some(hour)))?;
    step(
        &format!("snapshot: {snapshot:?} pins version {committed} (ttl 1h)"),
        t,
    );

    let t = Timer::start();
    let view = rt.block_on(ShardView::latest(storage.as_ref(), COLLECTION, SHARD))?;
    let tantivy_files = rt.block_on(view.list(StorageBackend::Tantivy))?;
    let segment = tantivy_files
        .iter()
        .find(|n| n.ends_with(".idx"))
        .ok_or_else(|| Error::InvalidConfig("no tantivy segment to break".into()))?;
    let mut broken = rt.block_on(store.transaction(COLLECTION))?;
    broken.delete(&view.path(StorageBackend::Tantivy, segment))?;
    broken.delete(&view.path(StorageBackend::Vector, "hnsw.bin"))?;
    let garbage = Bytes::from_static(b"not a graph");
    rt.block_on(broken.put(&view.path(StorageBackend::Graph, "edges.bin"), garbage))?;
    let broken_at = rt.block_on(broken.commit())?.version;
    let damaged = ShardView::latest(storage.as_ref(), COLLECTION, SHARD);
    let damaged = rt.block_on(damaged)?;
    let text_ok = damaged
        .index()
        .and_then(|i| search_text(&i, &args.query).map(|_| ()));
    let vector = rt.block_on(damaged.read(StorageBackend::Vector, "hnsw.bin"));
    let graph = rt.block_on(damaged.read(StorageBackend::Graph, "edges.bin"));
    let graph_ok = graph.and_then(|g| decode::<Vec<(u32, u32)>>("edges.bin", &g));
    step(
        &format!(
            "break: version {broken_at}: text {}, vector {}, graph {}",
            verdict(&text_ok),
            verdict(&vector),
            verdict(&graph_ok)
        ),
        t,
    );
    let t = Timer::start();
    let restored = rt.block_on(store.restore(COLLECTION, &Target::Snapshot(snapshot.clone())))?;
    step(
        &format!(
            "restore: version {} = snapshot {snapshot:?}",
            restored.version
        ),
        t,
    );

    // 7. Load the restored version.
    let t = Timer::start();
    let target = Target::Version(restored.version);
    let view = rt.block_on(ShardView::at(storage.as_ref(), COLLECTION, SHARD, &target))?;
    let index = view.index()?;
    let vector_file = rt.block_on(view.open_file(StorageBackend::Vector, "hnsw.bin"))?;
    let how = match vector_file.resident() {
        Some(_) => "memory-mapped, zero-copy",
        None => "no local copy (S3): one verified read",
    };
    // Resident content is hashed in place and handed back as the same mapping.
    let mapped = rt.block_on(vector_file.read_verified())?;
    let hnsw: HnswMap<Embedding, u32> = decode("hnsw.bin", &mapped)?;
    let nodes: Vec<Node> = decode(
        "nodes.bin",
        &rt.block_on(view.read(StorageBackend::Graph, "nodes.bin"))?,
    )?;
    let edges: Vec<(u32, u32)> = decode(
        "edges.bin",
        &rt.block_on(view.read(StorageBackend::Graph, "edges.bin"))?,
    )?;
    step(
        &format!(
            "load: version {}: tantivy pinned, hnsw.bin {how}",
            view.version()
        ),
        t,
    );

    // 8. The hybrid query.
    let t = Timer::start();
    let text_hits = search_text(&index, &args.query)?;
    let mut search = Search::default();
    let vector_hits: Vec<u32> = hnsw
        .search(&embed(&args.query), &mut search)
        .take(10)
        .map(|item| *item.value)
        .collect();
    let mut fused: HashMap<u32, f64> = HashMap::new();
    for hits in [&text_hits, &vector_hits] {
        for (rank, id) in hits.iter().enumerate() {
            *fused.entry(*id).or_default() += 1.0 / (60.0 + rank as f64);
        }
    }
    let mut ranked: Vec<(u32, f64)> = fused.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut neighbours: Vec<u32> = Vec::new();
    for (top, _) in ranked.iter().take(3) {
        for (a, b) in &edges {
            let other = if a == top {
                *b
            } else if b == top {
                *a
            } else {
                continue;
            };
            if !ranked.iter().any(|(id, _)| *id == other) && !neighbours.contains(&other) {
                neighbours.push(other);
            }
        }
    }
    step(
        &format!(
            "query {:?}: {} text + {} vector hits, {} graph neighbours",
            args.query,
            text_hits.len(),
            vector_hits.len(),
            neighbours.len()
        ),
        t,
    );
    for (id, score) in ranked.iter().take(5) {
        let node = &nodes[*id as usize];
        println!("  {score:.4}  #{id:<4} {} > {}", node.file, node.heading);
    }
    for id in neighbours.iter().take(3) {
        let node = &nodes[*id as usize];
        println!("  linked  #{id:<4} {} > {}", node.file, node.heading);
    }
    let searcher = index.reader().map_err(tantivy_err)?.searcher();
    println!(
        "restored shard: {} documents, {} vectors, {} edges; total {:.1} ms",
        searcher.num_docs(),
        hnsw.iter().count(),
        edges.len(),
        total.ms()
    );
    Ok(())
}

fn verdict<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!(
            "broken ({})",
            e.to_string().chars().take(60).collect::<String>()
        ),
    }
}

/// Ids of the ten best BM25 hits.
fn search_text(index: &Index, query: &str) -> Result<Vec<u32>> {
    let schema = index.schema();
    let body = schema.get_field("body").map_err(tantivy_err)?;
    let id = schema.get_field("id").map_err(tantivy_err)?;
    let reader = index.reader().map_err(tantivy_err)?;
    let searcher = reader.searcher();
    let parsed = QueryParser::for_index(index, vec![body])
        .parse_query_lenient(query)
        .0;
    let hits = searcher
        .search(&parsed, &TopDocs::with_limit(10).order_by_score())
        .map_err(tantivy_err)?;
    let mut out = Vec::new();
    for (_, address) in hits {
        let document: TantivyDocument = searcher.doc(address).map_err(tantivy_err)?;
        if let Some(v) = document.get_first(id).and_then(|v| v.as_u64()) {
            out.push(v as u32);
        }
    }
    Ok(out)
}
