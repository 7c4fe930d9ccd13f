//! [`FaultBackend`]: injects failures, crashes and latency into any backend. Test support
//! for the crash-point and fault-injection suites.
//!
//! Every call that reaches storage counts as one operation, numbered from 0: each trait
//! method, and each `write`, `prepare`, `publish` and `abort` of an upload.
//!
//! - **Fail at k**: operation k returns an error without touching storage; later ones work.
//! - **Crash at k**: operation k is either dropped or applied (the process died before or
//!   after storage took the write, but before the caller heard back); it returns an error,
//!   and so does every later operation, as if the process were gone. What the inner backend
//!   holds afterwards is what a restarted process finds.
//! - **Latency**: every operation waits first.

use crate::backend::LayerHooks;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectBackend, ObjectMeta, PutOutcome, Upload};
use crate::error::{Error, Result};
use crate::keys::ObjectKey;

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Nothing.
    #[default]
    None,
    /// Operation k fails without effect.
    FailAt(u64),
    /// The disk fills up at operation k: from then on every operation that stores
    /// bytes fails without effect with ENOSPC, while reads and deletes still work.
    FullFrom(u64),
    /// The process dies at operation k; `applied` says whether storage took that write.
    CrashAt {
        /// The operation number.
        op: u64,
        /// Whether operation k reached storage before the crash.
        applied: bool,
    },
}

#[derive(Debug)]
struct State {
    fault: Mutex<Fault>,
    latency: Mutex<Option<Duration>>,
    ops: AtomicU64,
    crashed: AtomicBool,
}

/// A fault-injecting wrapper around another backend. Clones share the plan and counters.
#[derive(Debug, Clone)]
pub struct FaultBackend {
    inner: Arc<dyn ObjectBackend>,
    state: Arc<State>,
}

/// What a guarded operation should do.
enum Verdict {
    Run,
    RunThenFail,
    Fail,
    Full,
}

impl FaultBackend {
    /// Wraps `inner` with no fault planned.
    pub fn new(inner: Arc<dyn ObjectBackend>) -> Self {
        FaultBackend {
            inner,
            state: Arc::new(State {
                fault: Mutex::new(Fault::None),
                latency: Mutex::new(None),
                ops: AtomicU64::new(0),
                crashed: AtomicBool::new(false),
            }),
        }
    }

    /// Plans a fault, counting operations from now.
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
        self.state.ops.store(0, Ordering::SeqCst);
        self.state.crashed.store(false, Ordering::SeqCst);
    }

    /// Adds a delay before every operation (`None` removes it).
    pub fn set_latency(&self, latency: Option<Duration>) {
        *self.state.latency.lock().unwrap_or_else(|p| p.into_inner()) = latency;
    }

    /// Operations counted since the last [`set_fault`](Self::set_fault).
    pub fn ops(&self) -> u64 {
        self.state.ops.load(Ordering::SeqCst)
    }

    /// True once a planned crash happened.
    pub fn crashed(&self) -> bool {
        self.state.crashed.load(Ordering::SeqCst)
    }

    async fn verdict(&self, what: &str) -> Result<Verdict> {
        let latency = *self.state.latency.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        if self.state.crashed.load(Ordering::SeqCst) {
            return Err(injected(what, "process crashed earlier"));
        }
        let n = self.state.ops.fetch_add(1, Ordering::SeqCst);
        let fault = *self.state.fault.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match fault {
            Fault::FailAt(k) if k == n => Verdict::Fail,
            Fault::FullFrom(k) if n >= k && stores_bytes(what) => Verdict::Full,
            Fault::CrashAt { op, applied } if op == n => {
                self.state.crashed.store(true, Ordering::SeqCst);
                if applied {
                    Verdict::RunThenFail
                } else {
                    Verdict::Fail
                }
            }
            _ => Verdict::Run,
        })
    }

    /// Runs `op` under the plan.
    async fn guard<T, F>(&self, what: &str, op: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match self.verdict(what).await? {
            Verdict::Run => op.await,
            Verdict::RunThenFail => {
                let _ = op.await;
                Err(injected(what, "crashed after storage took the write"))
            }
            Verdict::Fail => Err(injected(what, "injected failure")),
            Verdict::Full => Err(Error::io(
                format!("{what} (injected)"),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            )),
        }
    }
}

/// Whether operation `what` needs free space (a full disk refuses it).
fn stores_bytes(what: &str) -> bool {
    matches!(
        what,
        "put"
            | "put_if_absent"
            | "begin_upload"
            | "upload write"
            | "upload prepare"
            | "upload publish"
    )
}

fn injected(what: &str, why: &str) -> Error {
    Error::Backend {
        context: what.to_owned(),
        message: why.to_owned(),
        source: None,
    }
}

#[async_trait]
impl ObjectBackend for FaultBackend {
    fn name(&self) -> &'static str {
        "fault"
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        self.guard("get", self.inner.get(key)).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        self.guard("get_range", self.inner.get_range(key, range))
            .await
    }

    async fn now(&self) -> Result<std::time::SystemTime> {
        self.inner.now().await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.guard("head", self.inner.head(key)).await
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.guard("put", self.inner.put(key, data)).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, data: Bytes) -> Result<PutOutcome> {
        self.guard("put_if_absent", self.inner.put_if_absent(key, data))
            .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.guard("delete", self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.guard("list", self.inner.list(prefix)).await
    }

    async fn touch(&self, key: &ObjectKey) -> Result<()> {
        self.guard("touch", self.inner.touch(key)).await
    }

    async fn begin_upload(&self) -> Result<Box<dyn Upload>> {
        let inner = self
            .guard("begin_upload", self.inner.begin_upload())
            .await?;
        Ok(Box::new(FaultUpload {
            backend: self.clone(),
            inner,
        }))
    }

    fn layer_hooks(&self) -> Option<&dyn LayerHooks> {
        Some(self)
    }
}

#[async_trait]
impl LayerHooks for FaultBackend {
    fn cheap_staging(&self) -> bool {
        self.inner.cheap_staging()
    }

    async fn map(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        self.guard("map", self.inner.map(key)).await
    }
}

struct FaultUpload {
    backend: FaultBackend,
    inner: Box<dyn Upload>,
}

#[async_trait]
impl Upload for FaultUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let backend = self.backend.clone();
        backend.guard("upload write", self.inner.write(chunk)).await
    }

    async fn prepare(&mut self) -> Result<()> {
        let backend = self.backend.clone();
        backend.guard("upload prepare", self.inner.prepare()).await
    }

    async fn publish(self: Box<Self>, key: &ObjectKey) -> Result<()> {
        let FaultUpload { backend, inner } = *self;
        backend.guard("upload publish", inner.publish(key)).await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let FaultUpload { backend, inner } = *self;
        backend.guard("upload abort", inner.abort()).await
    }
}
