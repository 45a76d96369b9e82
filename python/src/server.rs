//! `NativeServer`: a server that is configured, then started by `wait_ready` (as the
//! reference's is), with tokens added before or after.

use std::sync::{Arc, Mutex};

use linksocks_runtime_smol::core::access::AccessConfig;
use linksocks_runtime_smol::{
    parse_proxy_url, AccessRules, Error, ProxyUrl, ReverseToken, Server, ServerBuilder, TokenType,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{rules, secs, to_py};
use crate::executor::{block, complete_later, wait_ready, wait_ready_async, Tagged};

/// A token added before the server started, added to it when it starts.
enum Pending {
    Forward(String, AccessRules),
    Reverse(ReverseToken, String),
    Connector(String, String, AccessRules),
}

impl Pending {
    fn token(&self) -> &str {
        match self {
            Pending::Forward(t, _) | Pending::Reverse(_, t) | Pending::Connector(t, _, _) => t,
        }
    }
}

enum State {
    Configured(Box<ServerBuilder>, Vec<Pending>),
    Starting,
    Running(Arc<Server>),
    Failed(Error),
    Closed,
}

struct Shared {
    state: Mutex<State>,
    changed: event_listener::Event,
    rt: Tagged,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start the server if it is only configured, in a task of its own that always ends with
    /// the state `Running` or `Failed` (even when nobody waits for it any more).
    fn start(self: &Arc<Self>) {
        let (builder, pending) = {
            let mut st = self.lock();
            match std::mem::replace(&mut *st, State::Starting) {
                State::Configured(b, p) => (b, p),
                other => {
                    *st = other;
                    return;
                }
            }
        };
        let me = self.clone();
        crate::executor::spawn(self.rt.wrap(async move {
            let result = start_with(*builder, pending, me.rt.clone()).await;
            *me.lock() = match result {
                Ok(s) => State::Running(Arc::new(s)),
                Err(e) => State::Failed(e),
            };
            me.changed.notify(usize::MAX);
        }));
    }

    /// Once no start is under way: the running server, or why there is none (`None` while
    /// it is only configured).
    async fn settled(self: &Arc<Self>) -> Result<Option<Arc<Server>>, Error> {
        loop {
            let changed = self.changed.listen();
            match &*self.lock() {
                State::Configured(..) => return Ok(None),
                State::Running(s) => return Ok(Some(s.clone())),
                State::Failed(e) => return Err(e.clone()),
                State::Closed => return Err(Error::Stopped),
                State::Starting => {}
            }
            changed.await;
        }
    }

    /// Start the server if it is only configured, then wait until it listens (or failed).
    async fn ready(self: Arc<Self>) -> Result<Arc<Server>, Error> {
        self.start();
        self.settled().await?.ok_or(Error::Stopped)
    }

    /// Stop the server; a start under way is waited for first, so that its ports are
    /// released when this returns.
    async fn close(self: Arc<Self>) {
        let _ = self.settled().await;
        let old = std::mem::replace(&mut *self.lock(), State::Closed);
        self.changed.notify(usize::MAX);
        if let State::Running(s) = old {
            let _ = s.stop().await;
        }
    }
}

async fn start_with(
    builder: ServerBuilder,
    pending: Vec<Pending>,
    rt: Tagged,
) -> Result<Server, Error> {
    let server = builder.start(rt).await?;
    for p in pending {
        match p {
            Pending::Forward(t, r) => {
                server.add_forward_token_with_rules(Some(&t), r)?;
            }
            Pending::Reverse(r, _) => {
                server.add_reverse_token(r).await?;
            }
            Pending::Connector(t, rev, r) => {
                server.add_connector_token_with_rules(Some(&t), &rev, r)?;
            }
        }
    }
    Ok(server)
}

/// A random token of 16 hex digits, as the server generates.
fn new_token() -> String {
    let u = uuid::Uuid::new_v4();
    u.simple().to_string()[..16].to_string()
}

#[pyclass(module = "linksocks_rs._native")]
pub struct NativeServer {
    shared: Arc<Shared>,
}

impl NativeServer {
    /// The running server (`None` while it is only configured), once a start under way has
    /// settled; the reason there is none if it failed or was closed.
    fn settled(&self, py: Python<'_>) -> PyResult<Option<Arc<Server>>> {
        let shared = self.shared.clone();
        block(py, async move { shared.settled().await }, None)?
            .expect("no timeout")
            .map_err(to_py)
    }

    /// The running server, if it runs now (for counters: no waiting, no error).
    fn running(&self) -> Option<Arc<Server>> {
        match &*self.shared.lock() {
            State::Running(s) => Some(s.clone()),
            _ => None,
        }
    }
}

#[pymethods]
impl NativeServer {
    #[new]
    #[pyo3(signature = (*, tag, ws_host, ws_port, socks_host, socks_wait_client, buffer_size,
        api_keys, channel_timeout, connect_timeout, connector_wait_provider, fast_open,
        upstream_proxy, upstream_username, upstream_password, entry_rules, dial_rules,
        transport_grace, connector_autonomy, tls_cert, tls_key, max_message_size))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tag: u64,
        ws_host: String,
        ws_port: u16,
        socks_host: String,
        socks_wait_client: bool,
        buffer_size: Option<usize>,
        api_keys: Vec<String>,
        channel_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        connector_wait_provider: Option<f64>,
        fast_open: bool,
        upstream_proxy: Option<String>,
        upstream_username: Option<String>,
        upstream_password: Option<String>,
        entry_rules: Option<String>,
        dial_rules: Option<String>,
        transport_grace: Option<f64>,
        connector_autonomy: bool,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        max_message_size: Option<usize>,
    ) -> PyResult<Self> {
        let mut b = ServerBuilder::default()
            .ws_addr(ws_host, ws_port)
            .socks_host(socks_host)
            .socks_nowait(!socks_wait_client)
            .fast_open(fast_open)
            .connector_autonomy(connector_autonomy)
            .access(AccessConfig {
                entry: rules(entry_rules.as_deref())?,
                dial: rules(dial_rules.as_deref())?,
            });
        for k in api_keys {
            b = b.api_key(k);
        }
        if let Some(size) = buffer_size {
            if size == 0 {
                return Err(PyValueError::new_err("buffer_size must be positive"));
            }
            b = b.buffer_size(size);
        }
        if let Some(size) = max_message_size {
            b = b.max_message_size(size);
        }
        let mut config = b.options().machine.clone();
        if let Some(t) = secs(channel_timeout, "channel_timeout")? {
            config.timings.idle_timeout = t;
        }
        if let Some(t) = secs(connect_timeout, "connect_timeout")? {
            config.timings.connect_timeout = t;
        }
        if let Some(t) = secs(connector_wait_provider, "connector_wait_provider")? {
            config.timings.connector_wait_provider = t;
        }
        if let Some(t) = secs(transport_grace, "transport_grace")? {
            config.timings.transport_grace = t;
        }
        b = b.config(config);
        if let Some(p) = upstream(upstream_proxy, upstream_username, upstream_password)? {
            b = b.upstream_proxy(p);
        }
        match (tls_cert, tls_key) {
            (None, None) => {}
            (Some(c), Some(k)) => b = b.tls(c, k),
            _ => {
                return Err(PyValueError::new_err(
                    "tls_cert and tls_key must be given together",
                ))
            }
        }
        Ok(NativeServer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::Configured(Box::new(b), Vec::new())),
                changed: event_listener::Event::new(),
                rt: Tagged::new(tag),
            }),
        })
    }

    /// Start (if not yet) and wait until listening; `False` when `timeout` ran out.
    #[pyo3(signature = (timeout=None))]
    fn wait_ready(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let ready = self.shared.rt.wrap(self.shared.clone().ready());
        wait_ready(py, ready, secs(timeout, "timeout")?)
    }

    /// `wait_ready` without blocking: `done(True, None)` or `done(None, exception)`.
    #[pyo3(signature = (done, timeout=None))]
    fn wait_ready_async(&self, done: PyObject, timeout: Option<f64>) -> PyResult<()> {
        let ready = self.shared.rt.wrap(self.shared.clone().ready());
        wait_ready_async(done, ready, secs(timeout, "timeout")?, "server");
        Ok(())
    }

    #[pyo3(signature = (token=None, rules=None))]
    fn add_forward_token(
        &self,
        py: Python<'_>,
        token: Option<String>,
        rules: Option<String>,
    ) -> PyResult<String> {
        let rules = crate::convert::rules(rules.as_deref())?;
        let token = token.filter(|t| !t.is_empty());
        if let Some(s) = self.settled(py)? {
            return py
                .allow_threads(|| s.add_forward_token_with_rules(token.as_deref(), rules))
                .map_err(to_py);
        }
        let token = token.unwrap_or_else(new_token);
        self.add_pending(Pending::Forward(token.clone(), rules))?;
        Ok(token)
    }

    #[pyo3(signature = (token=None, port=None, username=None, password=None,
        allow_manage_connector=false, rules=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_reverse_token(
        &self,
        py: Python<'_>,
        token: Option<String>,
        port: Option<u16>,
        username: Option<String>,
        password: Option<String>,
        allow_manage_connector: bool,
        rules: Option<String>,
    ) -> PyResult<(String, Option<u16>)> {
        let mut r = ReverseToken::new()
            .allow_manage_connector(allow_manage_connector)
            .rules(crate::convert::rules(rules.as_deref())?);
        if username.is_some() || password.is_some() {
            r = r.credentials(username.unwrap_or_default(), password.unwrap_or_default());
        }
        let token = token.filter(|t| !t.is_empty());
        if let Some(s) = self.settled(py)? {
            if let Some(t) = &token {
                r = r.token(t.clone());
            }
            if let Some(p) = port {
                r = r.port(p);
            }
            let info = block(py, async move { s.add_reverse_token(r).await }, None)?
                .expect("no timeout")
                .map_err(to_py)?;
            return Ok((info.token, info.port));
        }
        let token = token.unwrap_or_else(new_token);
        let port = match port {
            Some(p) => Some(p),
            None => match &*self.shared.lock() {
                State::Configured(b, _) => b.pick_socks_port(),
                _ => None,
            },
        };
        r = r.token(token.clone());
        if let Some(p) = port {
            r = r.port(p);
        }
        self.add_pending(Pending::Reverse(r, token.clone()))?;
        Ok((token, port))
    }

    #[pyo3(signature = (connector_token, reverse_token, rules=None))]
    fn add_connector_token(
        &self,
        py: Python<'_>,
        connector_token: Option<String>,
        reverse_token: String,
        rules: Option<String>,
    ) -> PyResult<String> {
        let rules = crate::convert::rules(rules.as_deref())?;
        let token = connector_token.filter(|t| !t.is_empty());
        if let Some(s) = self.settled(py)? {
            return py
                .allow_threads(|| {
                    s.add_connector_token_with_rules(token.as_deref(), &reverse_token, rules)
                })
                .map_err(to_py);
        }
        let token = token.unwrap_or_else(new_token);
        self.add_pending(Pending::Connector(token.clone(), reverse_token, rules))?;
        Ok(token)
    }

    /// Remove a token; whether it existed.
    fn remove_token(&self, py: Python<'_>, token: String) -> PyResult<bool> {
        if let Some(s) = self.settled(py)? {
            return Ok(py.allow_threads(|| s.remove_token(&token)).is_ok());
        }
        let mut st = self.shared.lock();
        match &mut *st {
            State::Configured(_, pending) => {
                let before = pending.len();
                pending.retain(|p| p.token() != token);
                Ok(pending.len() != before)
            }
            _ => Ok(false),
        }
    }

    /// Authenticated links of every token.
    fn client_count(&self, py: Python<'_>) -> usize {
        self.running()
            .map(|s| py.allow_threads(|| s.tokens().iter().map(|t| t.clients_count).sum()))
            .unwrap_or(0)
    }

    /// Authenticated links of `token`.
    fn token_client_count(&self, py: Python<'_>, token: String) -> usize {
        self.running()
            .and_then(|s| {
                py.allow_threads(|| {
                    s.tokens()
                        .into_iter()
                        .find(|t| t.token == token)
                        .map(|t| t.clients_count)
                })
            })
            .unwrap_or(0)
    }

    /// `(token, kind, clients, port)` of every token.
    fn tokens(&self, py: Python<'_>) -> Vec<(String, &'static str, usize, Option<u16>)> {
        self.running()
            .map(|s| {
                py.allow_threads(|| {
                    s.tokens()
                        .into_iter()
                        .map(|t| {
                            let kind = match t.kind {
                                TokenType::Forward => "forward",
                                TokenType::Reverse => "reverse",
                                TokenType::Connector => "connector",
                            };
                            (t.token, kind, t.clients_count, t.port)
                        })
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// The bound HTTP/WebSocket port, once started.
    fn ws_port(&self) -> Option<u16> {
        self.running().map(|s| s.ws_addr().port())
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

impl NativeServer {
    fn add_pending(&self, p: Pending) -> PyResult<()> {
        match &mut *self.shared.lock() {
            State::Configured(_, pending) => {
                if pending.iter().any(|q| q.token() == p.token()) {
                    return Err(to_py(Error::Token(
                        linksocks_runtime_smol::core::session::TokenError::Exists,
                    )));
                }
                pending.push(p);
                Ok(())
            }
            _ => Err(to_py(Error::Stopped)),
        }
    }
}

/// The upstream proxy: a URL (`socks5://`, `http://`; a bare `host:port` is SOCKS5), with the
/// credentials given apart if any.
pub fn upstream(
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
) -> PyResult<Option<ProxyUrl>> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let url = if url.contains("://") {
        url
    } else {
        format!("socks5://{url}")
    };
    let mut p = parse_proxy_url(&url).map_err(|e| PyValueError::new_err(e.to_string()))?;
    if username.as_deref().is_some_and(|u| !u.is_empty()) {
        p.username = username;
        p.password = password;
    }
    Ok(Some(p))
}
