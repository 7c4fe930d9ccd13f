//! The model-based property test on local disk and on the in-memory backend.

#[path = "support/model.rs"]
mod model;

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use segstore::backend::memory::MemoryBackend;
use segstore::{LocalStorage, Store, StoreOptions};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: model::cases(24),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model_local.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn local_opener(root: std::path::PathBuf) -> model::Opener {
    Box::new(move || {
        let root = root.clone();
        Box::pin(async move { LocalStorage::open(&root).await.unwrap().store().clone() })
    })
}

fn local_case(ops: Vec<model::ModelOp>) {
    let dir = tempfile::tempdir().unwrap();
    let open = local_opener(dir.path().join("store"));
    runtime().block_on(model::run(&open, ops));
}

fn memory_case(ops: Vec<model::ModelOp>) {
    let backend = MemoryBackend::new();
    let open: model::Opener = Box::new(move || {
        let backend = backend.clone();
        Box::pin(async move { Store::new(Arc::new(backend), StoreOptions::default()) })
    });
    runtime().block_on(model::run(&open, ops));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn local_store_matches_model(ops in prop::collection::vec(model::model_op(), 1..40)) {
        local_case(ops);
    }

    #[test]
    fn memory_store_matches_model(ops in prop::collection::vec(model::model_op(), 1..60)) {
        memory_case(ops);
    }
}
