//! Asking a running server or client to stop (Ctrl-C, SIGTERM, a test's teardown).

/// Held by whoever may ask for the stop. Cloneable; `stop` may be called from any thread, any
/// number of times.
#[derive(Clone, Debug)]
pub struct StopHandle(async_channel::Sender<()>);

/// Held by the running server or client.
#[derive(Clone, Debug)]
pub struct Stop(async_channel::Receiver<()>);

/// A handle and the stop signal it controls.
pub fn stop_pair() -> (StopHandle, Stop) {
    let (tx, rx) = async_channel::bounded(1);
    (StopHandle(tx), Stop(rx))
}

impl StopHandle {
    /// Ask for the stop (graceful: the server or client ends its channels and links).
    pub fn stop(&self) {
        self.0.close();
    }
}

impl Stop {
    /// Resolves once stop was asked for (or every handle was dropped).
    pub async fn wait(&self) {
        while self.0.recv().await.is_ok() {}
    }

    /// Whether the stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.is_closed()
    }
}
