//! Where the engine runs inside a Python process, and how Python waits for it.
//!
//! One thread (`linksocks-rs`) runs a smol executor that drives every server and client of the
//! process, the way the CLI runs on one thread. Python never runs engine code while holding the
//! GIL: a blocking call waits with the GIL released, in slices, so Ctrl-C reaches Python
//! within a tenth of a second; an `async_*` call completes an asyncio future from the engine's
//! thread through the event loop's `call_soon_threadsafe`.

use std::future::Future;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use linksocks_runtime_smol::runtime::BoxFuture;
use linksocks_runtime_smol::Runtime;
use pyo3::prelude::*;
use pyo3::BoundObject;
use tracing::Instrument;

/// How often a blocking wait looks up from the engine to let Python handle signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

fn executor() -> &'static Arc<smol::Executor<'static>> {
    static EX: OnceLock<Arc<smol::Executor<'static>>> = OnceLock::new();
    EX.get_or_init(|| {
        let ex = Arc::new(smol::Executor::new());
        let run = ex.clone();
        std::thread::Builder::new()
            .name("linksocks-rs".into())
            .spawn(move || loop {
                // A task that panics (a bug) must not take the engine down with it: every
                // other server and client, and every call waiting on them, would hang.
                let run = std::panic::AssertUnwindSafe(run.run(std::future::pending::<()>()));
                let _ = std::panic::catch_unwind(|| smol::block_on(run));
            })
            .expect("start the linksocks-rs thread");
        ex
    })
}

/// The runtime of one server or client: the process's executor, with every task inside a
/// span naming the instance, so its log records reach the Python logger it was given.
#[derive(Clone)]
pub struct Tagged {
    span: tracing::Span,
}

impl Tagged {
    pub fn new(tag: u64) -> Tagged {
        Tagged {
            span: tracing::info_span!(crate::logging::SPAN, tag),
        }
    }

    /// `fut`, logging as this instance (for work done on its behalf outside its own tasks).
    pub fn wrap<F: Future>(&self, fut: F) -> tracing::instrument::Instrumented<F> {
        fut.instrument(self.span.clone())
    }
}

impl Runtime for Tagged {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        executor()
            .spawn(task.instrument(self.span.clone()))
            .detach();
    }
}

/// Run `fut` on the engine's thread.
pub fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    executor().spawn(fut).detach();
}

/// Run `fut` on the engine and wait for it with the GIL released, up to `timeout`
/// (`Ok(None)` when it ran out). Signals are handled every [`SIGNAL_SLICE`]: a Ctrl-C raises
/// `KeyboardInterrupt` here (the future goes on; the caller's object can still be closed).
pub fn block<T: Send + 'static>(
    py: Python<'_>,
    fut: impl Future<Output = T> + Send + 'static,
    timeout: Option<Duration>,
) -> PyResult<Option<T>> {
    let (tx, rx) = mpsc::sync_channel(1);
    // In a mutex only so that a reference to it may cross into `allow_threads`.
    let rx = std::sync::Mutex::new(rx);
    spawn(async move {
        let _ = tx.send(fut.await);
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(SIGNAL_SLICE),
            None => SIGNAL_SLICE,
        };
        let got = py.allow_threads(|| {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv_timeout(slice)
        });
        match got {
            Ok(v) => return Ok(Some(v)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "the linksocks-rs engine dropped a call (a bug)",
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Run `fut` on the engine; when it completes, call `done(value, None)` or `done(None,
/// exception)` from the engine's thread (the Python side hands it on to its event loop).
pub fn complete_later<T>(done: PyObject, fut: impl Future<Output = PyResult<T>> + Send + 'static)
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    spawn(async move {
        let r = fut.await;
        // On a thread of the blocking pool: waiting for the GIL must not stall the engine.
        smol::unblock(move || {
            Python::with_gil(|py| {
                let args = match r {
                    Ok(v) => match v.into_pyobject(py) {
                        Ok(v) => (v.into_any().unbind(), py.None()),
                        Err(e) => (py.None(), Into::<PyErr>::into(e).into_value(py).into_any()),
                    },
                    Err(e) => (py.None(), e.into_value(py).into_any()),
                };
                if let Err(e) = done.call1(py, args) {
                    e.write_unraisable(py, None);
                }
            })
        })
        .await;
    });
}

/// Wait for an instance to be ready (`ready`) with the GIL released: `true` when it is,
/// `false` when `timeout` ran out, the engine's error as an exception.
pub fn wait_ready<T: Send + 'static>(
    py: Python<'_>,
    ready: impl Future<Output = Result<T, linksocks_runtime_smol::Error>> + Send + 'static,
    timeout: Option<Duration>,
) -> PyResult<bool> {
    match block(py, ready, timeout)? {
        None => Ok(false),
        Some(r) => r.map(|_| true).map_err(crate::convert::to_py),
    }
}

/// [`wait_ready`] for asyncio: `done(True, None)`, or `done(None, exception)` (a
/// `TimeoutError` naming `what` when `timeout` ran out).
pub fn wait_ready_async<T: Send + 'static>(
    done: PyObject,
    ready: impl Future<Output = Result<T, linksocks_runtime_smol::Error>> + Send + 'static,
    timeout: Option<Duration>,
    what: &'static str,
) {
    complete_later(done, async move {
        let ready = async { Some(ready.await) };
        let limit = async {
            match timeout {
                Some(t) => {
                    smol::Timer::after(t).await;
                    None
                }
                None => std::future::pending().await,
            }
        };
        match smol::future::or(ready, limit).await {
            Some(r) => r.map(|_| true).map_err(crate::convert::to_py),
            None => Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                "the {what} was not ready in time"
            ))),
        }
    });
}
