//! Running the server: the HTTP/WebSocket port, and the server machine behind it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use linksocks_core::api;
use linksocks_core::session::{LinkId, ListenerState, ServerMachine};
use linksocks_core::time::Instant;
use tracing::{debug, info, warn};

use crate::driver::{Driver, Role};
use crate::embed::task::Outcome;
use crate::http;
use crate::net::{TcpListener, TcpStream};
use crate::tls::MaybeTls;
use crate::ws::Side;
use crate::{ConfigError, Error, Event, Rt, ServerOptions, Stop, TokenSpec};

/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an API answer waits for the SOCKS5 listener of a token it added to open.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerRole;

impl Role for ServerRole {
    type M = ServerMachine;

    fn open_link(_d: &Arc<Driver<Self>>, link: LinkId, _url: String) {
        debug!(%link, "the server machine asked to open a link; ignored");
    }

    fn close(machine: &mut ServerMachine, now: Instant) {
        machine.close(now);
    }
}

struct Api {
    keys: Vec<String>,
    socks_host: String,
}

/// Add a token the server starts with.
fn add_token(
    machine: &mut ServerMachine,
    spec: TokenSpec,
) -> Result<String, linksocks_core::session::TokenError> {
    // The rules of the outermost `WithRules`, for the token inside them all.
    let mut rules = None;
    let mut spec = spec;
    while let TokenSpec::WithRules(inner, r) = spec {
        rules.get_or_insert(r);
        spec = *inner;
    }
    let rules = rules.unwrap_or_default();
    match spec {
        TokenSpec::Forward(tok) => machine.add_forward_token_with_rules(tok, rules),
        TokenSpec::Reverse(spec) => machine.add_reverse_token_with_rules(spec, rules),
        TokenSpec::Connector(tok, rev) => machine.add_connector_token_with_rules(tok, &rev, rules),
        TokenSpec::WithRules(..) => unreachable!("unwrapped above"),
    }
}

/// Ports reverse tokens added through the API draw from when they name none (the reference's pool).
const PORT_POOL: std::ops::RangeInclusive<u16> = 1024..=10240;

/// A port of the pool that can be bound on `host` right now, probed from a random start.
pub(crate) fn pick_port(host: &str) -> Option<u16> {
    let span = (PORT_POOL.end() - PORT_POOL.start()) as u32 + 1;
    let start = (uuid::Uuid::new_v4().as_u128() % span as u128) as u32;
    (0..span)
        .map(|i| PORT_POOL.start() + ((start + i) % span) as u16)
        .find(|p| std::net::TcpListener::bind((host, *p)).is_ok())
}

/// Random bytes from the operating system (through uuid's generator).
pub(crate) fn os_ids() -> Box<dyn linksocks_core::ids::IdSource> {
    Box::new(|out: &mut [u8]| {
        for chunk in out.chunks_mut(16) {
            let u = uuid::Uuid::new_v4();
            chunk.copy_from_slice(&u.as_bytes()[..chunk.len()]);
        }
    })
}

pub(crate) fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// A server whose HTTP/WebSocket port is listening and whose tasks are running.
pub(crate) struct StartedServer {
    pub driver: Arc<Driver<ServerRole>>,
    pub ws_addr: SocketAddr,
}

/// Start a server: add its tokens, bind its HTTP/WebSocket port, and spawn the tasks that serve
/// it until `stop`; `outcome` is set when they are done (graceful shutdown included).
pub(crate) async fn start_server(
    rt: Rt,
    opts: ServerOptions,
    events: async_channel::Sender<Event>,
    stop: Stop,
    outcome: Arc<Outcome>,
) -> Result<StartedServer, Error> {
    let origin = StdInstant::now();
    let mut machine = ServerMachine::new(opts.machine.clone(), os_ids(), Instant::ZERO);
    for t in &opts.tokens {
        add_token(&mut machine, t.clone()).map_err(ConfigError::Token)?;
    }
    let acceptor = match &opts.tls {
        Some(t) => Some(crate::tls::acceptor(t)?),
        None => None,
    };
    let addr = crate::host_port(&opts.ws_host, opts.ws_port);
    let bind_err = |e: std::io::Error| Error::bind(addr.clone(), e);
    let addrs = rt
        .resolve(opts.ws_host.clone(), opts.ws_port)
        .await
        .map_err(bind_err)?;
    let first = *addrs
        .first()
        .ok_or_else(|| bind_err(std::io::Error::other("host has no address")))?;
    let listener = rt.listen(first).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    info!("LinkSocks server listening on {local}");

    let driver = Driver::<ServerRole>::new(
        rt.clone(),
        origin,
        machine,
        Some(events),
        opts.max_message_size,
        opts.upstream_proxy.clone(),
        Default::default(),
    );
    driver.report(Event::WebSocketListening(local));
    driver.with(|_, _| ());
    let keys = opts.all_api_keys();
    let api = (!keys.is_empty()).then(|| {
        Arc::new(Api {
            keys,
            socks_host: opts.socks_host.clone(),
        })
    });
    {
        let d = driver.clone();
        let stop = stop.clone();
        rt.spawn(async move { d.run_timers(stop).await });
    }
    // The accept loop is a task of its own: a future polled on every wake-up of the thread
    // would retry the accept each time, a wasted syscall (or several) per event of every
    // connection.
    {
        let (rt2, d) = (rt.clone(), driver.clone());
        rt.spawn(async move {
            accept_loop(rt2, &listener, d.clone(), api, acceptor, stop).await;
            drop(listener);
            info!("shutting down");
            d.shutdown(Duration::from_secs(3)).await;
            outcome.set(Ok(()));
        });
    }
    Ok(StartedServer {
        driver,
        ws_addr: local,
    })
}

/// Accept HTTP/WebSocket connections until `stop`, each served by a task of its own.
async fn accept_loop(
    rt: Rt,
    listener: &TcpListener,
    driver: Arc<Driver<ServerRole>>,
    api: Option<Arc<Api>>,
    acceptor: Option<futures_rustls::TlsAcceptor>,
    stop: Stop,
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let _ = stream.set_nodelay();
                let d = driver.clone();
                let api = api.clone();
                let acceptor = acceptor.clone();
                // Every line logged while serving this connection (its link's included, by
                // the core too) names the peer, so a refused or misbehaving client can be
                // told apart from the others.
                let span = tracing::info_span!("http", %peer);
                let serve = async move {
                    let stream = match acceptor {
                        None => MaybeTls::Plain(stream),
                        Some(a) => {
                            let timeout = d.rt.sleep_until(StdInstant::now() + HEAD_TIMEOUT);
                            let hs = futures_lite::future::or(
                                async { Some(a.accept(stream).await) },
                                async {
                                    timeout.await;
                                    None
                                },
                            )
                            .await;
                            match hs {
                                Some(Ok(s)) => MaybeTls::Server(Box::new(s)),
                                Some(Err(e)) => {
                                    debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                None => return,
                            }
                        }
                    };
                    serve_http(d, stream, peer, api).await
                };
                rt.spawn(tracing::Instrument::instrument(serve, span));
            }
            Some(Err(e)) => {
                warn!("accept failed: {e}");
                rt.sleep_until(StdInstant::now() + Duration::from_millis(50))
                    .await;
            }
        }
    }
}

/// Waits (bounded) until the SOCKS5 listener of `token` is open or has failed to open.
pub(crate) async fn settle_listener(d: &Arc<Driver<ServerRole>>, token: &str) {
    let deadline = StdInstant::now() + LISTEN_TIMEOUT;
    loop {
        let settled = d.listener_settled.listen();
        if d.lock().machine.listener_state(token) != ListenerState::Opening
            || StdInstant::now() >= deadline
        {
            return;
        }
        let timeout = d.rt.sleep_until(deadline);
        futures_lite::future::or(settled, timeout).await;
    }
}

async fn serve_http(
    d: Arc<Driver<ServerRole>>,
    mut stream: MaybeTls<TcpStream>,
    peer: SocketAddr,
    api: Option<Arc<Api>>,
) {
    let timeout = d.rt.sleep_until(StdInstant::now() + HEAD_TIMEOUT);
    let head =
        futures_lite::future::or(async { Some(http::read_head(&mut stream).await) }, async {
            timeout.await;
            None
        })
        .await;
    let (head, rest) = match head {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            // A connection that closes before sending anything (a port probe) is no offence.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                debug!("{e}");
            } else {
                info!("{e}; answered 400");
            }
            let _ = http::respond(
                &mut stream,
                400,
                "text/plain; charset=utf-8",
                &[],
                b"400 Bad Request\n",
            )
            .await;
            return;
        }
        None => {
            info!("no complete request head within {HEAD_TIMEOUT:?}; closing");
            return;
        }
    };
    let path = head.path().to_string();
    if path == "/socket" || path.starts_with("/socket/") {
        let key = head.header("sec-websocket-key").map(str::to_string);
        let (true, Some(key)) = (head.is_websocket_upgrade(), key) else {
            info!("request for {path} is not a WebSocket upgrade");
            let _ = http::respond(
                &mut stream,
                400,
                "text/plain; charset=utf-8",
                &[],
                b"Bad Request\n",
            )
            .await;
            return;
        };
        let accept = http::accept_key(&key);
        if http::respond(
            &mut stream,
            101,
            "",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", &accept),
            ],
            b"",
        )
        .await
        .is_err()
        {
            return;
        }
        let mut st = d.lock();
        let now = d.now();
        let link = st.machine.handle_link_accept(now, &head.target);
        debug!(%peer, %link, "WebSocket link accepted");
        d.attach_link(&mut st, link, stream, Side::Server, rest.freeze());
        d.dispatch(&mut st);
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    if path == "/" {
        let body = if api.is_some() {
            format!("LinkSocks v{version} is running. API endpoints available at /api/*\n")
        } else {
            format!("LinkSocks v{version} is running but API is not enabled.\n")
        };
        let _ = http::respond(
            &mut stream,
            200,
            "text/plain; charset=utf-8",
            &[],
            body.as_bytes(),
        )
        .await;
        return;
    }
    if let Some(api) = api.filter(|_| path.starts_with("/api/") || path == "/metrics") {
        let body = match http::read_body(&mut stream, &head, rest, 64 << 10).await {
            Ok(b) => b,
            Err(e) => {
                let _ = http::respond(
                    &mut stream,
                    400,
                    "text/plain; charset=utf-8",
                    &[],
                    format!("{e}\n").as_bytes(),
                )
                .await;
                return;
            }
        };
        let resp = {
            let mut st = d.lock();
            let now = d.now();
            let host = api.socks_host.clone();
            let mut pick = || pick_port(&host);
            let mut ctx = api::ApiContext {
                keys: &api.keys,
                version: concat!("v", env!("CARGO_PKG_VERSION")),
                socks_host: &api.socks_host,
                pick_port: &mut pick,
            };
            let req = api::ApiRequest {
                method: &head.method,
                path: &path,
                api_key: head.header("x-api-key"),
                body: &body,
            };
            let r = api::handle(&mut st.machine, now, &mut ctx, &req);
            d.dispatch(&mut st);
            r
        };
        let resp = match resp.pending_listener.clone() {
            None => resp,
            Some(token) => {
                settle_listener(&d, &token).await;
                let mut st = d.lock();
                let now = d.now();
                let r = api::settle(&mut st.machine, now, resp);
                d.dispatch(&mut st);
                r
            }
        };
        if resp.status == 401 {
            warn!("API request with a wrong key");
        }
        let _ = http::respond(
            &mut stream,
            resp.status,
            resp.content_type,
            &[],
            resp.body.as_bytes(),
        )
        .await;
        return;
    }
    let _ = http::respond(
        &mut stream,
        404,
        "text/plain; charset=utf-8",
        &[("X-Content-Type-Options", "nosniff")],
        b"404 page not found\n",
    )
    .await;
}
