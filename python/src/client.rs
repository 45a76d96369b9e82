//! `NativeClient`: a client that is configured, then started by `wait_ready` (as the
//! reference's is).

use std::sync::{Arc, Mutex};

use linksocks_runtime_smol::{Client, ClientBuilder, Error, ProxyEnv};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{rules, secs, to_py};
use crate::executor::{block, complete_later, wait_ready, wait_ready_async, Tagged};
use crate::server::upstream;

enum State {
    Configured(Box<ClientBuilder>),
    Running(Arc<Client>),
    /// It could not start (an unreadable CA file, say): every later call says why.
    Failed(Error),
    Closed,
}

struct Shared {
    state: Mutex<State>,
    rt: Tagged,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running client, started now if it was only configured.
    fn started(&self) -> Result<Arc<Client>, Error> {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Closed) {
            State::Configured(b) => match b.start(self.rt.clone()) {
                Ok(c) => {
                    let c = Arc::new(c);
                    *st = State::Running(c.clone());
                    Ok(c)
                }
                Err(e) => {
                    *st = State::Failed(e.clone());
                    Err(e)
                }
            },
            State::Failed(e) => {
                *st = State::Failed(e.clone());
                Err(e)
            }
            State::Running(c) => {
                *st = State::Running(c.clone());
                Ok(c)
            }
            State::Closed => Err(Error::Stopped),
        }
    }

    fn running(&self) -> Option<Arc<Client>> {
        match &*self.lock() {
            State::Running(c) => Some(c.clone()),
            _ => None,
        }
    }

    async fn ready(self: Arc<Self>) -> Result<(), Error> {
        self.started()?.ready().await
    }

    async fn close(self: Arc<Self>) {
        let old = std::mem::replace(&mut *self.lock(), State::Closed);
        if let State::Running(c) = old {
            // The result says why the client had stopped, if it had; closing is not an error.
            let _ = c.stop().await;
        }
    }
}

#[pyclass(module = "linksocks_rs._native")]
pub struct NativeClient {
    shared: Arc<Shared>,
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (*, tag, token, ws_url, reverse, socks_host, socks_port, socks_username,
        socks_password, socks_wait_server, reconnect, reconnect_delay, buffer_size,
        channel_timeout, connect_timeout, threads, fast_open, upstream_proxy,
        upstream_username, upstream_password, no_env_proxy, entry_rules, dial_rules,
        transport_grace, tls_ca, tls_insecure, max_message_size, retry_auth, connector_token))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tag: u64,
        token: Option<String>,
        ws_url: String,
        reverse: bool,
        socks_host: String,
        socks_port: u16,
        socks_username: Option<String>,
        socks_password: Option<String>,
        socks_wait_server: bool,
        reconnect: bool,
        reconnect_delay: Option<f64>,
        buffer_size: Option<usize>,
        channel_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        threads: usize,
        fast_open: bool,
        upstream_proxy: Option<String>,
        upstream_username: Option<String>,
        upstream_password: Option<String>,
        no_env_proxy: bool,
        entry_rules: Option<String>,
        dial_rules: Option<String>,
        transport_grace: Option<f64>,
        tls_ca: Option<String>,
        tls_insecure: bool,
        max_message_size: Option<usize>,
        retry_auth: bool,
        connector_token: Option<String>,
    ) -> PyResult<Self> {
        if threads == 0 {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        // The reference presents `anonymous` without a token.
        let mut b = ClientBuilder::new(
            token
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "anonymous".into()),
        )
        .url(ws_url)
        .reverse(reverse)
        .socks_addr(socks_host, socks_port)
        .socks_no_wait(!socks_wait_server)
        .reconnect(reconnect)
        .retry_auth(retry_auth)
        .threads(threads)
        .fast_open(fast_open)
        .tls_insecure(tls_insecure);
        if socks_username.is_some() || socks_password.is_some() {
            b = b.socks_credentials(
                socks_username.unwrap_or_default(),
                socks_password.unwrap_or_default(),
            );
        }
        let entry = rules(entry_rules.as_deref())?;
        let dial = rules(dial_rules.as_deref())?;
        let mut config = b.options().machine.clone();
        config.entry_rules = Arc::new(entry);
        config.data.dial_rules = Arc::new(dial);
        if let Some(size) = buffer_size {
            if size == 0 {
                return Err(PyValueError::new_err("buffer_size must be positive"));
            }
            config.data.max_batch = size;
        }
        if let Some(t) = secs(reconnect_delay, "reconnect_delay")? {
            config.timings.reconnect_delay = t;
        }
        if let Some(t) = secs(channel_timeout, "channel_timeout")? {
            config.timings.idle_timeout = t;
        }
        if let Some(t) = secs(connect_timeout, "connect_timeout")? {
            config.timings.connect_timeout = t;
        }
        if let Some(t) = secs(transport_grace, "transport_grace")? {
            config.timings.transport_grace = t;
        }
        if let Some(c) = connector_token {
            config.connector_token = Some(c);
        }
        b = b.config(config);
        if let Some(size) = max_message_size {
            b = b.max_message_size(size);
        }
        if let Some(p) = upstream(upstream_proxy, upstream_username, upstream_password)? {
            b = b.upstream_proxy(p);
        }
        if !no_env_proxy {
            b = b.env_proxy(ProxyEnv::from_vars(std::env::vars()));
        }
        if let Some(ca) = tls_ca {
            b = b.tls_ca(ca);
        }
        // A bad URL is a bad argument: say so now, not at wait_ready.
        linksocks_runtime_smol::core::session::client::normalize_url(&b.options().machine.url)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(NativeClient {
            shared: Arc::new(Shared {
                state: Mutex::new(State::Configured(Box::new(b))),
                rt: Tagged::new(tag),
            }),
        })
    }

    /// Start (if not yet) and wait until connected (and, forward, the SOCKS5 port is open);
    /// `False` when `timeout` ran out.
    #[pyo3(signature = (timeout=None))]
    fn wait_ready(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let ready = self.shared.rt.wrap(self.shared.clone().ready());
        wait_ready(py, ready, secs(timeout, "timeout")?)
    }

    /// `wait_ready` without blocking: `done(True, None)` or `done(None, exception)`.
    #[pyo3(signature = (done, timeout=None))]
    fn wait_ready_async(&self, done: PyObject, timeout: Option<f64>) -> PyResult<()> {
        let ready = self.shared.rt.wrap(self.shared.clone().ready());
        wait_ready_async(done, ready, secs(timeout, "timeout")?, "client");
        Ok(())
    }

    /// Provider: register a connector token with the server (`None`: generated).
    #[pyo3(signature = (token=None))]
    fn add_connector(&self, py: Python<'_>, token: Option<String>) -> PyResult<String> {
        let c = self
            .shared
            .running()
            .ok_or_else(|| to_py(Error::NotConnected))?;
        let token = token.filter(|t| !t.is_empty());
        block(
            py,
            async move { c.add_connector(token.as_deref()).await },
            None,
        )?
        .expect("no timeout")
        .map_err(to_py)
    }

    /// `add_connector` without blocking.
    #[pyo3(signature = (done, token=None))]
    fn add_connector_async(&self, done: PyObject, token: Option<String>) -> PyResult<()> {
        let c = self
            .shared
            .running()
            .ok_or_else(|| to_py(Error::NotConnected))?;
        let token = token.filter(|t| !t.is_empty());
        complete_later(done, async move {
            c.add_connector(token.as_deref()).await.map_err(to_py)
        });
        Ok(())
    }

    /// Provider: remove a connector token.
    fn remove_connector(&self, py: Python<'_>, token: String) -> PyResult<()> {
        let c = self
            .shared
            .running()
            .ok_or_else(|| to_py(Error::NotConnected))?;
        block(py, async move { c.remove_connector(&token).await }, None)?
            .expect("no timeout")
            .map_err(to_py)
    }

    fn is_connected(&self, py: Python<'_>) -> bool {
        self.shared
            .running()
            .is_some_and(|c| py.allow_threads(|| c.is_connected()))
    }

    /// The server's last Partners count.
    fn partners(&self) -> i64 {
        self.shared.running().map_or(0, |c| c.partners())
    }

    fn socks_port(&self) -> Option<u16> {
        self.shared
            .running()
            .and_then(|c| c.socks_addr())
            .map(|a| a.port())
    }

    /// The connector token the server registered at start (autonomy), if any.
    fn connector_token(&self) -> Option<String> {
        self.shared.running().and_then(|c| c.connector_token())
    }

    /// Stop (gracefully, waiting up to a few seconds); harmless when already closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.shared.clone().close(), None)?;
        Ok(())
    }

    /// `close` without blocking: `done(None, None)` when done.
    fn close_async(&self, done: PyObject) {
        let shared = self.shared.clone();
        complete_later(done, async move {
            shared.close().await;
            Ok::<_, PyErr>(())
        });
    }

    /// Stop without waiting (the garbage collector's path).
    fn close_nowait(&self) {
        crate::executor::spawn(self.shared.clone().close());
    }
}
