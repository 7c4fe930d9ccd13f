//! Helpers shared by the tantivy adapter tests: opening adapters, a small schema and
//! corpus, and the differential comparison (generic over any `Directory`, so that S3 and
//! cached stores can be added later).

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use segstore::{
    Freshness, LocalStorage, SegmentStorage, StoreOptions, TantivyAdapterOptions,
    TantivyStorageAdapter,
};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Directory, Document, Index, IndexSettings, IndexWriter, TantivyDocument};

pub const COLLECTION: &str = "docs";
pub const SHARD: &str = "shard_0";

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Options with a fast watch poll, to keep reload tests short.
pub fn fast_options() -> TantivyAdapterOptions {
    TantivyAdapterOptions {
        watch_interval: Duration::from_millis(20),
        ..TantivyAdapterOptions::default()
    }
}

/// Opens a fresh store on `root` (as another process would) and an adapter over it.
pub fn open_adapter(root: &Path) -> (LocalStorage, TantivyStorageAdapter) {
    block(async {
        let store = LocalStorage::open(root).await.expect("open store");
        let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
        let adapter = TantivyStorageAdapter::open_with(shared, COLLECTION, SHARD, fast_options())
            .await
            .expect("open adapter");
        (store, adapter)
    })
}

/// Like [`open_adapter`], on a store whose reads always ask for the newest version: for
/// tests in which another store's commit must be visible to a manual reload at once, not
/// within the default read bound.
pub fn open_strict_adapter(root: &Path) -> (LocalStorage, TantivyStorageAdapter) {
    block(async {
        let options = StoreOptions {
            read_freshness: Freshness::Strict,
            ..StoreOptions::default()
        };
        let store = LocalStorage::open_with(root, options)
            .await
            .expect("open store");
        let shared: Arc<dyn SegmentStorage> = Arc::new(store.clone());
        let adapter = TantivyStorageAdapter::open_with(shared, COLLECTION, SHARD, fast_options())
            .await
            .expect("open adapter");
        (store, adapter)
    })
}

pub struct Fields {
    pub id: Field,
    pub title: Field,
    pub body: Field,
    /// Stored only, filled by [`add_long_docs`].
    pub payload: Field,
}

pub fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("id", INDEXED | STORED | FAST);
    let title = builder.add_text_field("title", TEXT | STORED);
    let body = builder.add_text_field("body", TEXT | STORED);
    let payload = builder.add_text_field("payload", STORED);
    (
        builder.build(),
        Fields {
            id,
            title,
            body,
            payload,
        },
    )
}

const WORDS: &[&str] = &[
    "segment", "storage", "blob", "manifest", "commit", "tantivy", "search", "engine", "shard",
    "merge", "reader", "writer", "index", "query", "term", "phrase", "rust", "async", "lock",
    "watch", "hash", "blake", "content", "address", "version", "crash", "durable", "atomic",
    "zebra", "quokka",
];

/// Deterministic pseudo-random text for document `i`.
pub fn body_of(i: u64) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 8 + (i % 17) as usize;
    let mut words = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Skewed towards the first words, so there are common and rare terms.
        let r = (x % 1000) as usize;
        let idx = (r * r / 1000 * WORDS.len()) / 1000;
        words.push(WORDS[idx.min(WORDS.len() - 1)]);
    }
    words.join(" ")
}

pub fn add_docs(writer: &IndexWriter, fields: &Fields, ids: std::ops::Range<u64>) {
    add_long_docs(writer, fields, ids, 0)
}

/// Like [`add_docs`], each document also storing `payload` bytes of hexadecimal noise
/// (stored, not indexed: it makes large files cheaply).
pub fn add_long_docs(
    writer: &IndexWriter,
    fields: &Fields,
    ids: std::ops::Range<u64>,
    payload: usize,
) {
    for i in ids {
        let mut doc = doc!(
            fields.id => i,
            fields.title => format!("document {i}"),
            fields.body => body_of(i),
        );
        if payload > 0 {
            let mut x = i.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
            let mut noise = String::with_capacity(payload + 16);
            while noise.len() < payload {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                noise.push_str(&format!("{x:016x}"));
            }
            noise.truncate(payload);
            doc.add_text(fields.payload, noise);
        }
        writer.add_document(doc).expect("add document");
    }
}

/// Number of live documents a fresh reader sees.
pub fn num_docs(index: &Index) -> u64 {
    index.reader().expect("reader").searcher().num_docs()
}

pub const QUERIES: &[&str] = &[
    "segment",
    "quokka",
    "zebra",
    "storage AND commit",
    "\"segment storage\"",
    "title:document",
    "crash OR durable",
    "+tantivy -rust",
    "title:\"document 1234\"",
    "title:7 OR title:8",
];

/// Result of one query: every hit as (score bits, stored document as JSON), best first.
/// Equal scores are ordered by document, since the order of segments (and so of tied
/// documents) is not deterministic across index builds.
pub type Hits = Vec<(u32, String)>;

/// Indexes `n` documents of the corpus into `dir` (one thread, so segment contents are
/// deterministic), with a deletion, then runs [`QUERIES`] and returns the ranked hits.
pub fn differential_run(dir: Box<dyn Directory>, n: u64, settings: IndexSettings) -> Vec<Hits> {
    differential_run_long(dir, n, settings, 1)
}

/// [`differential_run`] with `payload` bytes of stored noise per document.
pub fn differential_run_long(
    dir: Box<dyn Directory>,
    n: u64,
    settings: IndexSettings,
    payload: usize,
) -> Vec<Hits> {
    let (schema, fields) = schema();
    let index = Index::create(dir, schema.clone(), settings).expect("create index");
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, 50_000_000)
        .expect("writer");
    add_long_docs(&writer, &fields, 0..n / 2, payload);
    writer.commit().expect("commit 1");
    add_long_docs(&writer, &fields, n / 2..n, payload);
    writer.delete_term(tantivy::Term::from_field_u64(fields.id, 7));
    writer.commit().expect("commit 2");
    drop(writer);
    run_queries(&index, n)
}

/// Runs [`QUERIES`] on a fresh reader of `index`: the ranked hits of each, up to `n`.
pub fn run_queries(index: &Index, n: u64) -> Vec<Hits> {
    let (schema, fields) = schema();
    let searcher = index.reader().expect("reader").searcher();
    let parser = QueryParser::for_index(index, vec![fields.title, fields.body]);
    QUERIES
        .iter()
        .map(|q| {
            let query = parser.parse_query(q).expect("query");
            let top = searcher
                .search(&query, &TopDocs::with_limit(n as usize).order_by_score())
                .expect("search");
            let mut hits: Hits = top
                .into_iter()
                .map(|(score, addr)| {
                    let doc: TantivyDocument = searcher.doc(addr).expect("stored doc");
                    (score.to_bits(), doc.to_json(&schema))
                })
                .collect();
            // Scores are non-negative, so their bits order like the floats.
            hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            hits
        })
        .collect()
}

/// The stored `id` of a document.
pub fn id_of(doc: &TantivyDocument, fields: &Fields) -> u64 {
    doc.get_first(fields.id)
        .and_then(|v| v.as_u64())
        .expect("id field")
}
