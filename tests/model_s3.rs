//! The model-based property test of `tests/model_local.rs`, on S3 (a real moto server):
//! every case runs on a fresh bucket, and "reopen" connects a brand-new `S3Storage` to the
//! same bucket and prefix, so it must rediscover every collection's head from the bucket.
//!
//! S3 round trips are slow, so the default case count is small; scale it with
//! `SEGSTORE_PROPTEST_CASES`.

#[path = "support/model.rs"]
mod model;
mod support;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use segstore::{S3Config, S3Storage};
use support::moto;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: model::cases(6),
        // Every shrink step replays a case against S3; keep a failure's report quick.
        max_shrink_iters: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model_s3.txt",
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

fn s3_opener(config: S3Config) -> model::Opener {
    Box::new(move || {
        let config = config.clone();
        Box::pin(async move {
            S3Storage::connect(config)
                .await
                .expect("connecting to moto")
                .store()
                .clone()
        })
    })
}

fn s3_case(ops: Vec<model::ModelOp>) {
    let rt = runtime();
    let Some(config) = rt.block_on(moto::fresh_bucket()) else {
        return; // moto is missing and this is not CI: the harness said SKIP loudly
    };
    let open = s3_opener(config);
    rt.block_on(model::run(&open, ops));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn s3_store_matches_model(ops in prop::collection::vec(model::model_op(), 1..40)) {
        s3_case(ops);
    }
}
