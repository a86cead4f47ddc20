//! A fault-injecting wrapper around a real store, for tests and for trying out what a
//! failing bucket does to an operation: it fails the Nth call, cuts reads short, makes
//! every call time out, or slows every call down. Wrap an open repository with [`Repository::with_faults`] and steer
//! the faults through the [`Faults`] handle while operations run.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

use super::Repository;

/// What goes wrong, shared by every clone of a faulty repository. Calls are counted from
/// the moment the handle is made: every put, get, head, list, delete, copy, multipart part
/// and completion counts one.
#[derive(Clone, Default)]
pub struct Faults(Arc<State>);

#[derive(Default)]
struct State {
    calls: AtomicU64,
    /// The call that fails (1 = the next one); 0: none.
    fail_at: AtomicU64,
    /// Every call from `fail_at` on fails, not only that one.
    fail_after: AtomicBool,
    truncate_reads: AtomicBool,
    time_out: AtomicBool,
    /// Milliseconds every call waits before it is made (a slow store).
    delay_ms: AtomicU64,
}

impl Faults {
    /// A handle with no faults yet.
    pub fn new() -> Faults {
        Faults::default()
    }

    /// The `n`th call from now fails (1: the next), once.
    pub fn fail_call(&self, n: u64) {
        self.0.fail_after.store(false, Ordering::SeqCst);
        self.0.fail_at.store(self.0.calls.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Every call from the `n`th from now on fails (the store has gone away).
    pub fn fail_from(&self, n: u64) {
        self.fail_call(n);
        self.0.fail_after.store(true, Ordering::SeqCst);
    }

    /// Reads return only the first half of an object's bytes.
    pub fn truncate_reads(&self, on: bool) {
        self.0.truncate_reads.store(on, Ordering::SeqCst);
    }

    /// Every call waits, then fails with a timeout.
    pub fn time_out(&self, on: bool) {
        self.0.time_out.store(on, Ordering::SeqCst);
    }

    /// Every call waits this long first (a slow store; zero: none).
    pub fn delay(&self, delay: Duration) {
        self.0.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// No more faults.
    pub fn clear(&self) {
        self.0.fail_at.store(0, Ordering::SeqCst);
        self.0.fail_after.store(false, Ordering::SeqCst);
        self.truncate_reads(false);
        self.time_out(false);
        self.delay(Duration::ZERO);
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.0.calls.load(Ordering::SeqCst)
    }

    async fn call(&self, what: &str, path: &str) -> object_store::Result<()> {
        let n = self.0.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = self.0.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.0.time_out.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(injected(std::io::ErrorKind::TimedOut, format!("{what} {path} timed out (injected)")));
        }
        let at = self.0.fail_at.load(Ordering::SeqCst);
        if at != 0 && (n == at || (n > at && self.0.fail_after.load(Ordering::SeqCst))) {
            return Err(injected(std::io::ErrorKind::Other, format!("call {n} ({what} {path}) failed (injected)")));
        }
        Ok(())
    }
}

fn injected(kind: std::io::ErrorKind, message: String) -> object_store::Error {
    object_store::Error::Generic { store: "faults", source: Box::new(std::io::Error::new(kind, message)) }
}

impl Repository {
    /// This repository with every store call going through `faults`.
    pub fn with_faults(&self, faults: &Faults) -> Repository {
        let mut repo = self.clone();
        repo.store = Arc::new(FaultyStore { inner: self.store.clone(), faults: faults.clone() });
        repo
    }
}

#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faults(after {} calls)", self.calls())
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.faults.call("put", location.as_ref()).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.faults.call("start upload", location.as_ref()).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload { inner, faults: self.faults.clone(), path: location.to_string() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let head = options.head;
        self.faults.call(if head { "head" } else { "get" }, location.as_ref()).await?;
        let got = self.inner.get_opts(location, options).await?;
        if head || !self.faults.0.truncate_reads.load(Ordering::SeqCst) {
            return Ok(got);
        }
        let (meta, range, attributes, extensions) =
            (got.meta.clone(), got.range.clone(), got.attributes.clone(), got.extensions.clone());
        let mut bytes = got.bytes().await?;
        bytes.truncate(bytes.len() / 2);
        let stream = futures::stream::once(async move { Ok(bytes) }).boxed();
        Ok(GetResult { payload: GetResultPayload::Stream(stream), meta, range, attributes, extensions })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.faults.call("get ranges", location.as_ref()).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let faults = self.faults.clone();
        let checked = locations
            .and_then(move |path| {
                let faults = faults.clone();
                async move { faults.call("delete", path.as_ref()).await.map(|()| path) }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (faults, inner, prefix) = (self.faults.clone(), self.inner.clone(), prefix.cloned());
        futures::stream::once(async move {
            let shown = prefix.as_ref().map(std::string::ToString::to_string).unwrap_or_default();
            match faults.call("list", &shown).await {
                Ok(()) => inner.list(prefix.as_ref()),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.faults.call("list", prefix.map(std::convert::AsRef::as_ref).unwrap_or_default()).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.faults.call("copy", to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Faults,
    path: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let (faults, path) = (self.faults.clone(), self.path.clone());
        Box::pin(async move {
            faults.call("upload part", &path).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.faults.call("complete upload", &self.path).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
