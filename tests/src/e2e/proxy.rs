//! Our server and client in this process, each on a thread of its own driving the runtime the
//! test chose. A [`Proxy`] is stopped (as Ctrl-C would) and joined when dropped.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use linksocks_core::session::{ClientConfig, ClientRole, ServerConfig, SocksListen};
use linksocks_runtime::{
    ClientBuilder, ClientOptions, Error, Event, Events, Running, ServerBuilder, ServerOptions,
    StopHandle, TokenSpec,
};

/// How long a test waits for a proxy to report something it must report soon.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The executor a proxy under test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    Smol,
    AsyncStd,
}

impl Rt {
    /// Run `fut` to completion on this runtime, on the calling thread.
    fn block_on<T>(self, fut: impl std::future::Future<Output = T>) -> T {
        match self {
            Rt::Smol => linksocks_runtime_smol::block_on(fut),
            Rt::AsyncStd => linksocks_runtime_async_std::block_on(fut),
        }
    }
}

/// Server options for a test: HTTP/WebSocket on 127.0.0.1 with a port of the system's choice,
/// the given tokens, nothing else.
pub fn server_options(tokens: Vec<TokenSpec>) -> ServerOptions {
    ServerOptions {
        ws_host: "127.0.0.1".into(),
        ws_port: 0,
        machine: ServerConfig::default(),
        tokens,
        api_key: None,
        api_keys: Vec::new(),
        socks_host: "127.0.0.1".into(),
        upstream_proxy: None,
        max_message_size: linksocks_core::wire::MAX_MESSAGE_SIZE,
        tls: None,
    }
}

/// Client options for a test: forward clients and connectors get a SOCKS5 port on 127.0.0.1
/// of the system's choice; proxies from the environment are ignored.
pub fn client_options(url: &str, token: &str, role: ClientRole) -> ClientOptions {
    let mut machine = ClientConfig::new(url, Some(token.to_string()), role);
    if role == ClientRole::Forward {
        machine.socks = Some(socks_listen(None));
    }
    ClientOptions {
        machine,
        upstream_proxy: None,
        env_proxy: None,
        max_message_size: linksocks_core::wire::MAX_MESSAGE_SIZE,
        tls: Default::default(),
    }
}

/// A SOCKS5 listener on 127.0.0.1, port of the system's choice, with optional credentials.
pub fn socks_listen(credentials: Option<(&str, &str)>) -> SocksListen {
    SocksListen {
        host: "127.0.0.1".into(),
        port: 0,
        credentials: credentials
            .map(|(u, p)| std::sync::Arc::new(linksocks_core::socks::Credentials::new(u, p))),
    }
}

/// The `ws://` URL of a server listening on `addr`.
pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

/// A running server or client of ours.
pub struct Proxy {
    name: String,
    events: mpsc::Receiver<Event>,
    history: Vec<Event>,
    stop: Option<StopHandle>,
    thread: Option<JoinHandle<()>>,
    /// The proxy's result, sent when it ends.
    done: mpsc::Receiver<Result<(), Error>>,
    result: Option<Result<(), Error>>,
}

/// What the proxy thread tells the harness once the start returned.
type Started = Result<(Events, StopHandle), Error>;

/// Start the proxy `start` makes, report how it went on `started`, and run it until it ends;
/// its result goes to `done`.
async fn run<H: Running>(
    start: impl std::future::Future<Output = Result<H, Error>>,
    started: mpsc::Sender<Started>,
    done: mpsc::Sender<Result<(), Error>>,
) {
    match start.await {
        Err(e) => {
            let _ = started.send(Err(e.clone()));
            let _ = done.send(Err(e));
        }
        Ok(h) => {
            let _ = started.send(Ok((h.events(), h.stop_handle())));
            let _ = done.send(h.wait().await);
        }
    }
}

impl Proxy {
    /// Start a server.
    pub fn server(rt: Rt, opts: ServerOptions) -> Proxy {
        Self::start(rt, "server", move |started, done| async move {
            let b = ServerBuilder::from(opts);
            match rt {
                Rt::Smol => run(b.start(linksocks_runtime_smol::Smol), started, done).await,
                Rt::AsyncStd => {
                    run(
                        b.start(linksocks_runtime_async_std::AsyncStd),
                        started,
                        done,
                    )
                    .await
                }
            }
        })
    }

    /// Start a client (forward client, provider or connector, as `opts` say).
    pub fn client(rt: Rt, opts: ClientOptions) -> Proxy {
        let name = format!("{:?} client", opts.machine.role).to_lowercase();
        Self::start(rt, &name, move |started, done| async move {
            let b = ClientBuilder::from(opts);
            match rt {
                Rt::Smol => {
                    let c = b.start(linksocks_runtime_smol::Smol);
                    run(async { c }, started, done).await
                }
                Rt::AsyncStd => {
                    let c = b.start(linksocks_runtime_async_std::AsyncStd);
                    run(async { c }, started, done).await
                }
            }
        })
    }

    fn start<F, Fut>(rt: Rt, name: &str, go: F) -> Proxy
    where
        F: FnOnce(mpsc::Sender<Started>, mpsc::Sender<Result<(), Error>>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        super::init_logs();
        let (started_tx, started_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || rt.block_on(go(started_tx, done_tx)))
            .expect("spawn proxy thread");
        let (tx, rx) = mpsc::channel();
        let stop = match started_rx.recv_timeout(EVENT_TIMEOUT) {
            Ok(Ok((events, stop))) => {
                // The runtime reports on an async stream; tests wait with std's timeouts.
                std::thread::Builder::new()
                    .name(format!("{name} events"))
                    .spawn(move || {
                        while let Some(e) = events.recv_blocking() {
                            if tx.send(e).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn event thread");
                Some(stop)
            }
            // A start that failed: its error is the proxy's result.
            Ok(Err(_)) => None,
            Err(e) => panic!("{name} did not start within {EVENT_TIMEOUT:?}: {e}"),
        };
        Proxy {
            name: name.to_string(),
            events: rx,
            history: Vec::new(),
            stop,
            thread: Some(thread),
            done,
            result: None,
        }
    }

    /// Every event reported so far, oldest first.
    pub fn history(&mut self) -> &[Event] {
        while let Ok(e) = self.events.try_recv() {
            self.history.push(e);
        }
        &self.history
    }

    /// The first event (reported so far or within `timeout`) that `f` picks, or a panic
    /// naming `what`.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        if let Some(t) = self.history().iter().find_map(&mut f) {
            return t;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    let hit = f(&e);
                    self.history.push(e);
                    if let Some(t) = hit {
                        return t;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: no {what} within {timeout:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let name = self.name.clone();
                    let end = self.wait_end(Duration::from_secs(1));
                    panic!("{name}: ended before {what}: {end:?}")
                }
            }
        }
    }

    /// The server's HTTP/WebSocket address.
    pub fn ws_addr(&mut self) -> SocketAddr {
        self.wait_for("WebSocket listener", EVENT_TIMEOUT, |e| match e {
            Event::WebSocketListening(a) => Some(*a),
            _ => None,
        })
    }

    /// The `ws://` URL of this server.
    pub fn url(&mut self) -> String {
        ws_url(self.ws_addr())
    }

    /// The first SOCKS5 listener this proxy opened.
    pub fn socks_addr(&mut self) -> SocketAddr {
        self.socks_addrs(1)[0]
    }

    /// The first `n` SOCKS5 listeners this proxy opened, in order.
    pub fn socks_addrs(&mut self, n: usize) -> Vec<SocketAddr> {
        let mut seen = Vec::new();
        self.wait_for("SOCKS5 listener", EVENT_TIMEOUT, |e| {
            if let Event::SocksListening(a) = e {
                seen.push(*a);
            }
            (seen.len() >= n).then(|| seen.clone())
        })
    }

    /// Wait until `n` links of this client have authenticated (counting reconnections).
    pub fn wait_links_ready(&mut self, n: usize) {
        let mut count = 0;
        self.wait_for("authenticated link", EVENT_TIMEOUT, |e| {
            count += usize::from(*e == Event::LinkUp);
            (count >= n).then_some(())
        })
    }

    /// Targets this proxy dialled so far (forward server, provider).
    pub fn dialled(&mut self) -> Vec<String> {
        self.history()
            .iter()
            .filter_map(|e| match e {
                Event::Dialing(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Wait up to `timeout` for the proxy to end (by itself: a fatal error, a refused token;
    /// or after a stop); its result, or `None` if it still runs.
    pub fn wait_end(&mut self, timeout: Duration) -> Option<&Result<(), Error>> {
        if self.result.is_none() {
            let r = match self.done.recv_timeout(timeout) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{}: the proxy thread panicked", self.name)
                }
            };
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            self.result = Some(r);
        }
        self.result.as_ref()
    }

    /// A handle that asks this proxy to stop, as Ctrl-C does, from anywhere, any number of
    /// times; [`Proxy::wait_end`] then waits for it.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone().expect("the proxy started")
    }

    /// Ask the proxy to stop, as Ctrl-C does, and wait for it (at most 10 s).
    pub fn stop(mut self) -> Result<(), Error> {
        if let Some(s) = &self.stop {
            s.stop();
        }
        if self.wait_end(Duration::from_secs(10)).is_none() {
            panic!("{} did not stop within 10 s", self.name);
        }
        self.result.clone().expect("ended")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = &self.stop {
            s.stop();
        }
        if self.wait_end(Duration::from_secs(10)).is_none() && !std::thread::panicking() {
            panic!("{} did not stop within 10 s", self.name);
        }
    }
}

/// A forward token.
pub fn forward(token: &str) -> TokenSpec {
    TokenSpec::Forward(Some(token.into()))
}

/// A reverse token whose SOCKS5 listener is on 127.0.0.1 (port of the system's choice).
pub fn reverse(token: &str, credentials: Option<(&str, &str)>) -> TokenSpec {
    TokenSpec::Reverse(linksocks_core::session::ReverseTokenSpec {
        token: Some(token.into()),
        socks: Some(socks_listen(credentials)),
        allow_manage_connector: false,
    })
}

/// A forward server and a forward client connected to it: (server, client, client's SOCKS5).
pub fn forward_pair(rt: Rt, token: &str) -> (Proxy, Proxy, SocketAddr) {
    let mut server = Proxy::server(rt, server_options(vec![forward(token)]));
    let mut client = Proxy::client(
        rt,
        client_options(&server.url(), token, ClientRole::Forward),
    );
    let socks = client.socks_addr();
    (server, client, socks)
}
