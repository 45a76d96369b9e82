//! Building blocks of scenarios: configurations, topologies (forward, reverse, agent), and
//! random application mixes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linksocks_core::session::{
    ClientConfig, ClientRole, Event, ReverseTokenSpec, ServerConfig, SocksListen,
};
use linksocks_core::socks::Credentials;
use linksocks_core::time::Instant;

use super::app::{AppSpec, Dial, Form, Hs, Plan, SocksAuth};
use super::world::{random_data_config, NodeIdx, ReadRate, World};

pub const FWD_TOKEN: &str = "forward-token";
pub const REV_TOKEN: &str = "reverse-token";
pub const CONN_TOKEN: &str = "connector-token";
pub const SOCKS_USER: &str = "alice";
pub const SOCKS_PASS: &str = "s3cret";

/// Seconds as a duration.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// An instant `s` seconds after `t`.
pub fn plus(t: Instant, s: f64) -> Instant {
    t + secs(s)
}

/// A forward (or connector) client and the server.
#[derive(Clone, Debug)]
pub struct Forward {
    pub server: NodeIdx,
    pub client: NodeIdx,
    pub socks: SocketAddr,
}

/// A server whose SOCKS listener is served by providers.
#[derive(Clone, Debug)]
pub struct Reverse {
    pub server: NodeIdx,
    pub providers: Vec<NodeIdx>,
    pub socks: SocketAddr,
}

impl World {
    /// A server configuration with a random data path.
    pub fn server_config(&mut self) -> ServerConfig {
        ServerConfig {
            data: random_data_config(&mut self.rng),
            ..ServerConfig::default()
        }
    }

    /// A client configuration: random data path, random URL form (query authentication or an
    /// Auth message), one to three links.
    pub fn client_config(&mut self, token: &str, role: ClientRole) -> ClientConfig {
        let url = *self.rng.pick(&[
            "ws://sim-server:8765",
            "http://sim-server:8765/",
            "ws://sim-server:8765/socket/linksocks",
        ]);
        let mut c = ClientConfig::new(url, Some(token.to_string()), role);
        c.data = random_data_config(&mut self.rng);
        c.threads = *self.rng.pick(&[1, 1, 1, 2, 3]);
        c.socks_no_wait = self.rng.chance(0.3);
        c
    }

    /// A SOCKS listener on IPv4 or IPv6 loopback (port chosen by the world).
    pub fn socks_listen(&mut self, creds: bool) -> SocksListen {
        SocksListen {
            host: if self.rng.chance(0.75) {
                "127.0.0.1"
            } else {
                "::1"
            }
            .into(),
            port: 0,
            credentials: creds.then(|| Arc::new(Credentials::new(SOCKS_USER, SOCKS_PASS))),
        }
    }

    /// Whether node `n` has an authenticated link.
    pub fn is_ready(&self, n: NodeIdx) -> bool {
        let node = &self.nodes[n];
        node.plane().links_ready().next().is_some()
    }

    /// Run until `n` has an authenticated link (or panic at `deadline`).
    pub fn wait_ready(&mut self, n: NodeIdx, deadline: Instant) {
        if !self.run_until_pred(deadline, |w| w.is_ready(n)) {
            panic!(
                "{} not ready by {deadline:?}\n{}",
                self.nodes[n].name,
                self.describe()
            );
        }
    }

    /// Run until `n` has a bound listener; returns its address.
    pub fn wait_listener(&mut self, n: NodeIdx, deadline: Instant) -> SocketAddr {
        let ok = self.run_until_pred(deadline, |w| {
            w.listener_of(n).is_some()
                && w.nodes[n]
                    .events
                    .iter()
                    .any(|(_, e)| matches!(e, Event::Listening { .. }))
        });
        if !ok {
            panic!(
                "{} has no listener by {deadline:?}\n{}",
                self.nodes[n].name,
                self.describe()
            );
        }
        self.listener_of(n).expect("listener")
    }

    /// Server with a forward token and one forward client with a SOCKS listener.
    pub fn setup_forward(
        &mut self,
        tweak: impl FnOnce(&mut World, &mut ServerConfig, &mut ClientConfig),
    ) -> Forward {
        let mut sc = self.server_config();
        let mut cc = self.client_config(FWD_TOKEN, ClientRole::Forward);
        cc.socks = Some(self.socks_listen(false));
        tweak(self, &mut sc, &mut cc);
        let server = self.add_server(sc);
        self.server(server, |s, _| s.add_forward_token(Some(FWD_TOKEN.into())))
            .expect("token");
        let client = self.add_client("client", cc);
        let deadline = self.now + secs(30.0);
        self.wait_ready(client, deadline);
        let socks = self.wait_listener(client, deadline);
        Forward {
            server,
            client,
            socks,
        }
    }

    /// Server with a reverse token (SOCKS listener on the server) and `providers` providers.
    pub fn setup_reverse(
        &mut self,
        providers: usize,
        creds: bool,
        tweak: impl FnOnce(&mut World, &mut ServerConfig, &mut Vec<ClientConfig>),
    ) -> Reverse {
        let mut sc = self.server_config();
        let mut pcs: Vec<ClientConfig> = (0..providers)
            .map(|_| self.client_config(REV_TOKEN, ClientRole::Provider))
            .collect();
        tweak(self, &mut sc, &mut pcs);
        let server = self.add_server(sc);
        let listen = self.socks_listen(creds);
        self.server(server, |s, _| {
            s.add_reverse_token(ReverseTokenSpec {
                token: Some(REV_TOKEN.into()),
                socks: Some(listen),
                allow_manage_connector: false,
            })
        })
        .expect("token");
        let mut ps = Vec::new();
        for (i, pc) in pcs.into_iter().enumerate() {
            ps.push(self.add_client(&format!("provider{i}"), pc));
        }
        let deadline = self.now + secs(30.0);
        for &p in &ps {
            self.wait_ready(p, deadline);
        }
        let socks = self.wait_listener(server, deadline);
        Reverse {
            server,
            providers: ps,
            socks,
        }
    }

    /// A random TCP application: echo, download, upload or both ways, up to `max` bytes each
    /// way, any address form, sometimes pipelined, sometimes a slow reader.
    pub fn random_tcp_spec(&mut self, listener: SocketAddr, max: u64) -> AppSpec {
        let size = |w: &mut World| w.rng.log_between(1, max.max(1));
        let plan = match self.rng.usize(0..4) {
            0 => Plan::Echo { up: size(self) },
            1 => Plan::Download {
                down: size(self),
                reset: false,
            },
            2 => Plan::Upload { up: size(self) },
            _ => Plan::Duplex {
                up: size(self),
                down: size(self),
            },
        };
        let mut spec = AppSpec::new(listener, plan);
        spec.form = *self.rng.pick(&[Form::V4, Form::V6, Form::Domain]);
        spec.pipelined = self.rng.chance(0.25);
        spec.offer_both = self.rng.chance(0.3);
        spec.compressible = self.rng.chance(0.2);
        if self.rng.chance(0.15) {
            spec.read = ReadRate::Slow {
                bytes: self.rng.log_between(512, 64 << 10) as usize,
                every: Duration::from_micros(self.rng.log_between(100, 20_000)),
            };
        }
        spec
    }

    /// Start `count` random applications over the `window` after `start`.
    pub fn spawn_random(
        &mut self,
        listener: SocketAddr,
        count: usize,
        max: u64,
        start: Instant,
        window: Duration,
    ) -> Vec<usize> {
        (0..count)
            .map(|_| {
                let spec = self.random_tcp_spec(listener, max);
                let at =
                    start + Duration::from_nanos(self.rng.range(0..window.as_nanos() as u64 + 1));
                self.spawn(spec, at)
            })
            .collect()
    }

    /// An application with username/password.
    pub fn with_creds(mut spec: AppSpec, user: &str, pass: &str) -> AppSpec {
        spec.auth = SocksAuth::UserPass {
            user: user.into(),
            pass: pass.into(),
        };
        spec
    }

    /// Dials of application `a`'s target: which nodes dialled it.
    pub fn dial_nodes(&self, a: usize) -> Vec<NodeIdx> {
        self.dials
            .iter()
            .filter(|d| d.app == Some(a))
            .map(|d| d.node)
            .collect()
    }

    /// Convenience: a spec whose target refuses / never answers.
    pub fn spec_dial(listener: SocketAddr, plan: Plan, dial: Dial) -> AppSpec {
        let mut s = AppSpec::new(listener, plan);
        s.dial = dial;
        s
    }

    /// Shared by the forward and reverse username/password scenarios.
    pub fn check_socks_auth(&mut self, socks: SocketAddr) {
        let w = self;
        let mut cases = Vec::new();
        for case in 0..4 {
            let mut spec = AppSpec::new(
                socks,
                Plan::Echo {
                    up: w.rng.log_between(1, 32 << 10),
                },
            );
            spec.pipelined = w.rng.chance(0.3);
            spec.offer_both = w.rng.chance(0.5);
            spec = match case {
                0 => World::with_creds(spec, SOCKS_USER, SOCKS_PASS),
                1 => World::with_creds(spec, SOCKS_USER, "wrong"),
                2 => World::with_creds(spec, "mallory", SOCKS_PASS),
                _ => {
                    spec.offer_both = false;
                    spec
                }
            };
            let at = plus(w.now, w.rng.unit());
            cases.push((case, w.spawn(spec, at)));
        }
        let deadline = plus(w.now, 60.0);
        w.finish(deadline, secs(5.0));
        for (case, a) in cases {
            let app = &w.apps[a];
            match case {
                0 => assert!(app.success, "right credentials: {}", app.summary()),
                1 | 2 => {
                    assert_eq!(
                        app.hs,
                        Hs::Refused("auth status 1".into()),
                        "{}",
                        app.summary()
                    );
                    assert_eq!(app.closed_by_machine, Some(false), "{}", app.summary());
                    assert!(app.targets.is_empty());
                }
                _ => {
                    assert_eq!(
                        app.hs,
                        Hs::Refused("no acceptable method".into()),
                        "{}",
                        app.summary()
                    );
                    assert!(app.targets.is_empty());
                }
            }
        }
    }
}

/// A server relaying connectors to providers (agent mode).
#[derive(Clone, Debug)]
pub struct Agent {
    pub server: NodeIdx,
    pub providers: Vec<NodeIdx>,
    pub connector: NodeIdx,
    /// The connector's SOCKS listener.
    pub csocks: SocketAddr,
    /// The server's own SOCKS listener for the reverse token.
    pub ssocks: SocketAddr,
}

/// Server with a reverse token (and its SOCKS listener) and a connector token; `k` providers
/// and one connector.
pub fn setup_agent(w: &mut World, k: usize, connector_fast_open: bool) -> Agent {
    setup_agent_with(w, k, connector_fast_open, |_, _| {})
}

/// [`setup_agent`], with `tweak(world, config)` applied to each client's configuration
/// (providers first, then the connector) before it starts.
pub fn setup_agent_with(
    w: &mut World,
    k: usize,
    connector_fast_open: bool,
    tweak: impl Fn(&mut World, &mut ClientConfig),
) -> Agent {
    setup_agent_configs(w, k, connector_fast_open, |_| {}, tweak)
}

/// [`setup_agent_with`], with `server_tweak` applied to the server's configuration too.
pub fn setup_agent_configs(
    w: &mut World,
    k: usize,
    connector_fast_open: bool,
    server_tweak: impl FnOnce(&mut ServerConfig),
    tweak: impl Fn(&mut World, &mut ClientConfig),
) -> Agent {
    let mut sc = w.server_config();
    server_tweak(&mut sc);
    let server = w.add_server(sc);
    let listen = w.socks_listen(false);
    w.server(server, |s, _| {
        s.add_reverse_token(ReverseTokenSpec {
            token: Some(REV_TOKEN.into()),
            socks: Some(listen),
            allow_manage_connector: false,
        })
        .expect("reverse token");
        s.add_connector_token(Some(CONN_TOKEN.into()), REV_TOKEN)
            .expect("connector token");
    });
    let mut providers = Vec::new();
    for i in 0..k {
        let mut pc = w.client_config(REV_TOKEN, ClientRole::Provider);
        tweak(w, &mut pc);
        providers.push(w.add_client(&format!("provider{i}"), pc));
    }
    let mut cc = w.client_config(CONN_TOKEN, ClientRole::Forward);
    cc.socks = Some(w.socks_listen(false));
    cc.fast_open = connector_fast_open;
    tweak(w, &mut cc);
    let connector = w.add_client("connector", cc);
    let deadline = plus(w.now, 30.0);
    for &p in &providers {
        w.wait_ready(p, deadline);
    }
    w.wait_ready(connector, deadline);
    let csocks = w.wait_listener(connector, deadline);
    let ssocks = w.wait_listener(server, deadline);
    Agent {
        server,
        providers,
        connector,
        csocks,
        ssocks,
    }
}
