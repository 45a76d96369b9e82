//! The engine's log records, handed to Python's `logging`.
//!
//! A `tracing` layer queues each record that passes the level set from Python (bounded: when
//! Python does not keep up, records are dropped and counted, never waited for), with the tag
//! of the server or client whose task logged it. A Python thread drains the queue
//! ([`next_records`]) and passes each record to that instance's logger.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Name of the span that tags an instance's tasks.
pub const SPAN: &str = "linksocks_rs";
/// Records queued for Python at most.
const QUEUE: usize = 4096;

/// Python's level numbers: 10 debug, 20 info, 30 warning, 40 error; 5 for trace.
static LEVEL: AtomicU8 = AtomicU8::new(20);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// One record: the instance tag (0: none), the Python level, the target and the message.
type Record = (u64, u8, String, String);

struct Queue {
    tx: mpsc::SyncSender<Record>,
    rx: Mutex<mpsc::Receiver<Record>>,
}

fn queue() -> &'static Queue {
    static Q: OnceLock<Queue> = OnceLock::new();
    Q.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Queue {
            tx,
            rx: Mutex::new(rx),
        }
    })
}

fn py_level(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

/// The tag a span carries in its extensions.
struct Tag(u64);

struct TagVisitor(Option<u64>);

impl Visit for TagVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "tag" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

struct ToPython;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ToPython {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Cached per call site; a new level from Python rebuilds the cache
        // (`set_native_log_level`), so a disabled `trace!` costs nothing on the data path.
        if meta.is_span() || py_level(meta.level()) >= LEVEL.load(Ordering::Relaxed) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // Spans are always wanted (they carry the instance tag), so no hint below them.
        None
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        meta.is_span() || py_level(meta.level()) >= LEVEL.load(Ordering::Relaxed)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != SPAN {
            return;
        }
        let mut v = TagVisitor(None);
        attrs.record(&mut v);
        if let (Some(tag), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().insert(Tag(tag));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = py_level(meta.level());
        if level < LEVEL.load(Ordering::Relaxed) {
            return;
        }
        let tag = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .into_iter()
                    .find_map(|s| s.extensions().get::<Tag>().map(|t| t.0))
            })
            .unwrap_or(0);
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let record = (tag, level, meta.target().to_string(), msg.0);
        if queue().tx.try_send(record).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Install the layer as the process's `tracing` subscriber (once; a no-op if the embedding
/// program installed one of its own first).
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ToPython);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Forward records at `level` (Python's numbers) and above.
#[pyfunction]
pub fn set_native_log_level(level: i64) {
    let level = level.clamp(0, 50) as u8;
    if LEVEL.swap(level, Ordering::Relaxed) != level {
        tracing::callsite::rebuild_interest_cache();
    }
}

/// Wait up to `timeout_ms` for records, then return every one queued (GIL released while
/// waiting), with the number dropped since the last call.
#[pyfunction]
pub fn next_records(py: Python<'_>, timeout_ms: u64) -> (Vec<Record>, u64) {
    py.allow_threads(|| {
        let rx = queue().rx.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(timeout_ms)) {
            out.push(r);
            while out.len() < QUEUE {
                match rx.try_recv() {
                    Ok(r) => out.push(r),
                    Err(_) => break,
                }
            }
        }
        (out, DROPPED.swap(0, Ordering::Relaxed))
    })
}
