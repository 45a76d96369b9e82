//! How a handle learns that its server or client has finished, and with what result.

use std::sync::Mutex;

use event_listener::Event;

use crate::Error;

/// The result of a running server or client: set once by its last task, awaited by any
/// number of callers.
#[derive(Default)]
pub(crate) struct Outcome {
    result: Mutex<Option<Result<(), Error>>>,
    done: Event,
}

impl Outcome {
    /// Record the result (the first one wins) and wake every waiter.
    pub(crate) fn set(&self, r: Result<(), Error>) {
        self.lock().get_or_insert(r);
        self.done.notify(usize::MAX);
    }

    /// The result, if finished.
    pub(crate) fn get(&self) -> Option<Result<(), Error>> {
        self.lock().clone()
    }

    /// Wait for the result.
    pub(crate) async fn wait(&self) -> Result<(), Error> {
        loop {
            let l = self.done.listen();
            if let Some(r) = self.get() {
                return r;
            }
            l.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Result<(), Error>>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner())
    }
}
