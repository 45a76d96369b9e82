//! Turning parsed flags plus `LINKSOCKS_*` fallbacks into the runtime's options, the
//! "Configuration:" banner and any warnings. Pure: randomness and the environment are passed
//! in, so every mode's result can be tested.

use std::sync::Arc;

use linksocks_core::access::AccessRules;
use linksocks_core::ids::InstanceId;
use linksocks_core::session::client::normalize_url;
use linksocks_core::session::{
    ClientConfig, ClientRole, DataConfig, ReverseTokenSpec, ServerConfig, SocksListen,
};
use linksocks_core::socks::Credentials;
use linksocks_core::wire::DATA_HEADER_LEN;
use linksocks_runtime::{
    ClientOptions, ClientTls, ProxyEnv, ProxyKind, ProxyUrl, ServerOptions, ServerTls, TokenSpec,
};
/// The library's defaults are the CLI's.
pub use linksocks_runtime::{
    DEFAULT_SOCKS_HOST, DEFAULT_SOCKS_PORT, DEFAULT_URL, DEFAULT_WS_HOST, DEFAULT_WS_PORT,
};

use crate::args::{ClientArgs, CommonArgs, ServerArgs};
use crate::env::Env;
use crate::error::CliError;
use linksocks_runtime::proxy_url::parse_proxy_url;

/// The reference caps threads at 100 per CPU; one process never needs more than 100 links.
pub const MAX_THREADS: usize = 100;

/// Fresh randomness for tokens and the instance id.
pub trait Rng {
    /// A token as the reference generates them: 16 lowercase hex characters (8 random bytes).
    fn token(&mut self) -> String;
    fn instance(&mut self) -> InstanceId;
}

/// The OS generator, through uuid (which draws v4 UUIDs from getrandom).
pub struct OsRng;

impl Rng for OsRng {
    fn token(&mut self) -> String {
        let b = uuid::Uuid::new_v4().into_bytes();
        // Bytes 6 and 8 of a v4 UUID carry fixed version/variant bits; skip them so all 64
        // bits of the token are random.
        b[..6]
            .iter()
            .chain(&b[9..11])
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    fn instance(&mut self) -> InstanceId {
        InstanceId(uuid::Uuid::new_v4().into_bytes())
    }
}

/// A server ready to run.
#[derive(Debug)]
pub struct ServerPlan {
    pub opts: ServerOptions,
    /// The "Configuration:" block for stdout.
    pub banner: Vec<String>,
    pub warnings: Vec<String>,
}

/// A client, provider or connector ready to run.
#[derive(Debug)]
pub struct ClientPlan {
    pub opts: ClientOptions,
    pub warnings: Vec<String>,
}

/// Which subcommand asked for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Client,
    Provider,
    Connector,
}

/// An explicitly given flag wins, then the environment; empty strings count as not given
/// (the reference treats `-t ""` like no token).
fn pick(flag: &Option<String>, env: &Env, key: &str) -> Option<String> {
    match flag {
        Some(v) if !v.is_empty() => Some(v.clone()),
        Some(_) => None,
        None => env.string(key),
    }
}

fn pick_port(flag: Option<u16>, env: &Env, key: &str, default: u16) -> Result<u16, CliError> {
    match flag {
        Some(p) => Ok(p),
        None => Ok(env.port(key)?.unwrap_or(default)),
    }
}

fn pick_bool(flag: bool, env: &Env, key: &str) -> Result<bool, CliError> {
    if flag {
        return Ok(true);
    }
    Ok(env.bool(key)?.unwrap_or(false))
}

fn credentials(
    user: &Option<String>,
    pass: &Option<String>,
    env: &Env,
) -> Result<Option<Arc<Credentials>>, CliError> {
    let user = pick(user, env, "LINKSOCKS_SOCKS_USERNAME");
    let pass = pick(pass, env, "LINKSOCKS_SOCKS_PASSWORD");
    match (user, pass) {
        (None, None) => Ok(None),
        (Some(u), Some(p)) => Ok(Some(Arc::new(Credentials::new(u, p)))),
        // Half a pair would either be ignored (the reference's choice, leaving a listener the
        // user believes is protected wide open) or demand an empty field RFC 1929 clients
        // cannot send; neither is what anyone meant.
        (Some(_), None) => Err(CliError::Usage(
            "--socks-username needs --socks-password (or LINKSOCKS_SOCKS_PASSWORD) as well".into(),
        )),
        (None, Some(_)) => Err(CliError::Usage(
            "--socks-password needs --socks-username (or LINKSOCKS_SOCKS_USERNAME) as well".into(),
        )),
    }
}

/// What the reference answers when `--access-rule` comes with an API key: with the API on,
/// rules are per token (`POST /api/token`) and server-wide (`PUT /api/config/access`).
pub const ACCESS_RULE_WITH_API: &str =
    "--access-rule is not allowed in API server mode; configure access control through the HTTP API";

/// The rules of the repeated `--access-rule` flags; an invalid one is a usage error with the
/// parser's message.
fn access_rules(specs: &[String]) -> Result<AccessRules, CliError> {
    AccessRules::parse_cli(specs).map_err(|e| CliError::Usage(e.to_string()))
}

/// The API keys: every non-empty `-k`, else the comma-separated `LINKSOCKS_API_KEY` (blanks
/// around each trimmed, empty ones ignored). A `-k` value is taken whole, commas included.
fn api_keys(flags: &[String], env: &Env) -> Vec<String> {
    if !flags.is_empty() {
        return flags.iter().filter(|k| !k.is_empty()).cloned().collect();
    }
    env.string("LINKSOCKS_API_KEY")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn upstream_proxy(
    flag: &Option<String>,
    env: &Env,
    warnings: &mut Vec<String>,
) -> Result<Option<ProxyUrl>, CliError> {
    let Some(raw) = pick(flag, env, "LINKSOCKS_UPSTREAM_PROXY") else {
        return Ok(None);
    };
    let p = parse_proxy_url(&raw).map_err(|e| CliError::Usage(e.to_string()))?;
    if p.kind == ProxyKind::Http {
        warnings.push("HTTP proxy does not support UDP forwarding".into());
    }
    Ok(Some(p))
}

fn data_config(common: &CommonArgs, buffer_size: Option<usize>) -> Result<DataConfig, CliError> {
    let mut data = DataConfig {
        batch: common.batch.into(),
        ..DataConfig::default()
    };
    let max_msg = common.max_message_size;
    if max_msg < 1024 {
        return Err(CliError::Usage(format!(
            "--max-message-size {max_msg} is too small (at least 1024 bytes)"
        )));
    }
    // A batch must fit in one message with its header.
    let batch_room = max_msg - DATA_HEADER_LEN;
    match buffer_size {
        Some(b) if b > batch_room => {
            return Err(CliError::Usage(format!(
            "--buffer-size {b} does not fit in --max-message-size {max_msg} (at most {batch_room})"
        )))
        }
        Some(b) => data.max_batch = b,
        None => data.max_batch = data.max_batch.min(batch_room),
    }
    data.max_inflated = max_msg;
    Ok(data)
}

/// `linksocks-cli server`.
pub fn server(a: &ServerArgs, env: &Env, rng: &mut dyn Rng) -> Result<ServerPlan, CliError> {
    let mut warnings = Vec::new();
    let token = pick(&a.token, env, "LINKSOCKS_TOKEN");
    let connector_token = pick(&a.connector_token, env, "LINKSOCKS_CONNECTOR_TOKEN");
    let ws_host =
        pick(&a.ws_host, env, "LINKSOCKS_WEBSOCKET_HOST").unwrap_or_else(|| DEFAULT_WS_HOST.into());
    let ws_port = pick_port(a.ws_port, env, "LINKSOCKS_WEBSOCKET_PORT", DEFAULT_WS_PORT)?;
    let socks_host = pick(&a.socks_host, env, "LINKSOCKS_SOCKS_HOST")
        .unwrap_or_else(|| DEFAULT_SOCKS_HOST.into());
    let socks_port = pick_port(
        a.socks_port,
        env,
        "LINKSOCKS_SOCKS_PORT",
        DEFAULT_SOCKS_PORT,
    )?;
    let creds = credentials(&a.socks_username, &a.socks_password, env)?;
    let api_keys = api_keys(&a.api_key, env);
    let api = !api_keys.is_empty();
    let rules = access_rules(&a.access_rule)?;
    if api && !rules.is_empty() {
        return Err(CliError::Usage(ACCESS_RULE_WITH_API.into()));
    }
    let autonomy = pick_bool(a.connector_autonomy, env, "LINKSOCKS_CONNECTOR_AUTONOMY")?;
    let fast_open = pick_bool(a.fast_open, env, "LINKSOCKS_FASTOPEN")?;
    let upstream_proxy = upstream_proxy(&a.upstream_proxy, env, &mut warnings)?;
    let data = data_config(&a.common, a.buffer_size)?;

    // As in the reference, autonomy belongs to the reverse token of -r; without -r it would
    // silently extend to every reverse token later added over the API.
    let mut machine = ServerConfig {
        connector_autonomy: autonomy && a.reverse,
        socks_nowait: a.socks_nowait,
        fast_open,
        ..ServerConfig::default()
    };
    // As the reference: forward mode's rules are the server's dial rules, reverse mode's
    // belong to the reverse token (checked at its SOCKS5 port).
    if !a.reverse {
        machine.access.dial = rules.clone();
    }
    machine.timings.connector_wait_provider = a.connector_wait_provider;
    machine.timings.transport_grace = a.common.transport_grace;
    machine.data = data;

    let mut tokens = Vec::new();
    let mut banner = vec!["Configuration:".to_string()];
    if api && token.is_none() && !a.reverse {
        // The reference adds no token at all when the API is enabled; tokens come from
        // POST /api/token. Unlike the reference we still honour an explicit -t or -r, since
        // dropping them silently surprises more than it helps.
        banner.push("  Mode: HTTP API only (add tokens with POST /api/token)".into());
    } else if a.reverse {
        let token = token.unwrap_or_else(|| rng.token());
        banner.push("  Mode: reverse proxy (SOCKS5 on server -> client -> network)".into());
        banner.push(format!("  Token: {token}"));
        let socks = (!autonomy).then(|| SocksListen {
            host: socks_host.clone(),
            port: socks_port,
            credentials: creds.clone(),
        });
        // The reference prints -1 for "no SOCKS5 port" in autonomy mode; kept for scripts.
        banner.push(format!(
            "  SOCKS5 port: {}",
            socks.as_ref().map_or(-1, |s| i32::from(s.port))
        ));
        let reverse = TokenSpec::Reverse(ReverseTokenSpec {
            token: Some(token.clone()),
            socks,
            allow_manage_connector: autonomy,
        });
        tokens.push(if rules.is_empty() {
            reverse
        } else {
            TokenSpec::WithRules(Box::new(reverse), rules.clone())
        });
        if autonomy {
            if a.connector_token.as_deref().is_some_and(|c| !c.is_empty()) {
                warnings.push(
                    "--connector-token is ignored with --connector-autonomy: \
                     providers add their own"
                        .into(),
                );
            }
            if creds.is_some() && (a.socks_username.is_some() || a.socks_password.is_some()) {
                warnings.push(
                    "--socks-username/--socks-password are ignored with \
                     --connector-autonomy: there is no server SOCKS5 port"
                        .into(),
                );
            }
        } else {
            let ct = connector_token.unwrap_or_else(|| rng.token());
            if ct == token {
                return Err(CliError::Usage(
                    "the connector token must differ from the reverse token".into(),
                ));
            }
            banner.push(format!("  Connector Token: {ct}"));
            tokens.push(TokenSpec::Connector(Some(ct), token));
            if let Some(c) = &creds {
                banner.push(format!(
                    "  SOCKS5 username: {}",
                    String::from_utf8_lossy(c.username())
                ));
            }
        }
        if autonomy {
            banner.push("  Connector autonomy: enabled".into());
        }
    } else {
        let token = token.unwrap_or_else(|| rng.token());
        banner.push("  Mode: forward proxy (SOCKS5 on client -> server -> network)".into());
        banner.push(format!("  Token: {token}"));
        tokens.push(TokenSpec::Forward(Some(token)));
    }
    if !a.reverse {
        // Only flags given on the command line are worth a warning; an environment shared
        // between modes (a compose file) legitimately carries values this mode ignores.
        for (given, flag) in [
            (a.connector_token.is_some(), "--connector-token"),
            (a.connector_autonomy, "--connector-autonomy"),
            (
                a.socks_username.is_some() || a.socks_password.is_some(),
                "--socks-username/--socks-password",
            ),
            // With the API on, -i still governs reverse tokens added later over it.
            (a.socks_nowait && !api, "--socks-nowait"),
        ] {
            if given {
                warnings.push(format!("{flag} only applies to reverse mode (-r); ignored"));
            }
        }
    }

    if !rules.is_empty() {
        banner.push(format!("  Access rules: {rules}"));
    }

    let given = a.p2p.given();
    if !given.is_empty() {
        warnings.push(p2p_warning(&given));
    }

    let tls = match (&a.tls_cert, &a.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ServerTls {
            cert: cert.into(),
            key: key.into(),
        }),
        _ => {
            return Err(CliError::Usage(
                "--tls-cert and --tls-key must be given together".into(),
            ))
        }
    };

    Ok(ServerPlan {
        opts: ServerOptions {
            ws_host,
            ws_port,
            machine,
            tokens,
            api_key: None,
            api_keys,
            // Where reverse tokens added over the HTTP API put their SOCKS5 listeners.
            socks_host,
            upstream_proxy,
            max_message_size: a.common.max_message_size,
            tls,
        },
        banner,
        warnings,
    })
}

/// The proxy variables of the environment, for the client to pick its proxy from.
fn proxy_env(env: &Env) -> ProxyEnv {
    let names = ["ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"];
    ProxyEnv::from_vars(
        names
            .iter()
            .flat_map(|n| [n.to_string(), n.to_ascii_lowercase()])
            .filter_map(|n| env.string(&n).map(|v| (n, v))),
    )
}

fn p2p_warning(flags: &[&str]) -> String {
    format!(
        "{} ignored: peer-to-peer transport is not supported (all traffic is relayed)",
        flags.join(", ")
    )
}

/// `linksocks-cli client|provider|connector`.
pub fn client(
    kind: ClientKind,
    a: &ClientArgs,
    env: &Env,
    rng: &mut dyn Rng,
) -> Result<ClientPlan, CliError> {
    let mut warnings = Vec::new();
    let role = match kind {
        ClientKind::Provider => ClientRole::Provider,
        ClientKind::Client if a.reverse => ClientRole::Provider,
        ClientKind::Client => ClientRole::Forward,
        ClientKind::Connector if a.reverse => {
            let msg = "a connector is a forward client; use `provider` (or `client -r`) instead";
            return Err(CliError::Usage(msg.into()));
        }
        ClientKind::Connector => ClientRole::Forward,
    };

    let (token, connector_token) = if kind == ClientKind::Connector {
        // A connector authenticates with its connector token, which users naturally pass as
        // -c (or LINKSOCKS_CONNECTOR_TOKEN); -t still wins so `connector -t X` works as in
        // the reference, where connector is a plain alias of client.
        let flag_t = a.token.clone().filter(|t| !t.is_empty());
        let flag_c = a.connector_token.clone().filter(|t| !t.is_empty());
        if let (Some(t), Some(c)) = (&flag_t, &flag_c) {
            if t != c {
                warnings.push("both -t and -c given to connector; using -t".into());
            }
        }
        let token = flag_t
            .or(flag_c)
            .or_else(|| env.string("LINKSOCKS_TOKEN"))
            .or_else(|| env.string("LINKSOCKS_CONNECTOR_TOKEN"));
        (token, None)
    } else {
        let token = pick(&a.token, env, "LINKSOCKS_TOKEN");
        let ct = pick(&a.connector_token, env, "LINKSOCKS_CONNECTOR_TOKEN");
        if role == ClientRole::Forward {
            if a.connector_token.is_some() {
                warnings.push("--connector-token only applies to providers (-r); ignored".into());
            }
            (token, None)
        } else {
            (token, ct)
        }
    };

    let url = pick(&a.url, env, "LINKSOCKS_URL").unwrap_or_else(|| DEFAULT_URL.into());
    normalize_url(&url).map_err(|e| CliError::Usage(e.to_string()))?;

    let socks_host = pick(&a.socks_host, env, "LINKSOCKS_SOCKS_HOST")
        .unwrap_or_else(|| DEFAULT_SOCKS_HOST.into());
    let socks_port = pick_port(
        a.socks_port,
        env,
        "LINKSOCKS_SOCKS_PORT",
        DEFAULT_SOCKS_PORT,
    )?;
    let creds = credentials(&a.socks_username, &a.socks_password, env)?;
    let fast_open = pick_bool(a.fast_open, env, "LINKSOCKS_FASTOPEN")?;
    let upstream_proxy = upstream_proxy(&a.upstream_proxy, env, &mut warnings)?;
    let mut data = data_config(&a.common, None)?;
    let rules = Arc::new(access_rules(&a.access_rule)?);

    let threads = match usize::try_from(a.threads) {
        Ok(0) | Err(_) => 1,
        Ok(n) if n > MAX_THREADS => {
            warnings.push(format!(
                "--threads {n} is more than {MAX_THREADS}; using {MAX_THREADS}"
            ));
            MAX_THREADS
        }
        Ok(n) => n,
    };

    let mut machine = ClientConfig::new(url, token, role);
    // As the reference: a provider checks where it dials, a client or connector where
    // requests enter its own port.
    match role {
        ClientRole::Provider => data.dial_rules = rules,
        ClientRole::Forward => machine.entry_rules = rules,
    }
    if role == ClientRole::Forward {
        machine.socks = Some(SocksListen {
            host: socks_host,
            port: socks_port,
            credentials: creds,
        });
    } else {
        for (given, flag) in [
            (
                a.socks_host.is_some() || a.socks_port.is_some(),
                "--socks-host/--socks-port",
            ),
            (
                a.socks_username.is_some() || a.socks_password.is_some(),
                "--socks-username/--socks-password",
            ),
            (a.socks_no_wait, "--socks-no-wait"),
        ] {
            if given {
                warnings.push(format!(
                    "{flag} has no effect on a provider \
                     (the SOCKS5 port is on the server); ignored"
                ));
            }
        }
    }
    machine.socks_no_wait = a.socks_no_wait;
    machine.connector_token = connector_token;
    machine.threads = threads;
    machine.reconnect = !a.no_reconnect;
    machine.retry_auth = a.retry_auth;
    machine.fast_open = fast_open;
    machine.instance = rng.instance();
    machine.timings.transport_grace = a.common.transport_grace;
    machine.data = data;

    let given = a.p2p.given();
    if !given.is_empty() {
        warnings.push(p2p_warning(&given));
    }

    Ok(ClientPlan {
        opts: ClientOptions {
            machine,
            upstream_proxy,
            env_proxy: (!a.no_env_proxy).then(|| proxy_env(env)),
            max_message_size: a.common.max_message_size,
            tls: ClientTls {
                ca_file: a.tls_ca.clone().map(Into::into),
                insecure: a.tls_insecure,
            },
        },
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;
    use linksocks_core::session::BatchPolicy;
    use std::collections::HashMap;
    use std::time::Duration;

    /// Hands out t1, t2, ... so tests can tell which token went where.
    struct Seq(u32);
    impl Rng for Seq {
        fn token(&mut self) -> String {
            self.0 += 1;
            format!("gen{}", self.0)
        }
        fn instance(&mut self) -> InstanceId {
            InstanceId([7; 16])
        }
    }

    fn no_env() -> Env<'static> {
        Env::from_fn(|_| None)
    }

    fn server_args(extra: &[&str]) -> ServerArgs {
        let mut a = vec!["x", "server"];
        a.extend_from_slice(extra);
        match Cli::try_parse_from(a).unwrap().command {
            Command::Server(s) => s,
            _ => unreachable!(),
        }
    }

    fn client_args(cmd: &str, extra: &[&str]) -> ClientArgs {
        let mut a = vec!["x", cmd];
        a.extend_from_slice(extra);
        match Cli::try_parse_from(a).unwrap().command {
            Command::Client(c) | Command::Provider(c) | Command::Connector(c) => c,
            _ => unreachable!(),
        }
    }

    fn srv(extra: &[&str]) -> ServerPlan {
        server(&server_args(extra), &no_env(), &mut Seq(0)).unwrap()
    }

    #[test]
    fn plain_server_gets_one_forward_token() {
        let p = srv(&[]);
        assert!(matches!(&p.opts.tokens[..], [TokenSpec::Forward(Some(t))] if t == "gen1"));
        assert_eq!(
            p.banner,
            [
                "Configuration:",
                "  Mode: forward proxy (SOCKS5 on client -> server -> network)",
                "  Token: gen1"
            ]
        );
        assert_eq!((p.opts.ws_host.as_str(), p.opts.ws_port), ("0.0.0.0", 8765));
        assert!(p.opts.api_keys.is_empty() && p.opts.api_key.is_none());
        assert!(!p.opts.machine.connector_autonomy);
        assert_eq!(p.opts.max_message_size, 32 << 20);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);

        let p = srv(&["-t", "mine", "-H", "127.0.0.1", "-P", "0"]);
        assert!(matches!(&p.opts.tokens[..], [TokenSpec::Forward(Some(t))] if t == "mine"));
        assert_eq!((p.opts.ws_host.as_str(), p.opts.ws_port), ("127.0.0.1", 0));
    }

    #[test]
    fn reverse_server_gets_a_listener_and_a_connector_token() {
        let p = srv(&["-r", "-t", "rev"]);
        let [TokenSpec::Reverse(r), TokenSpec::Connector(Some(ct), of)] = &p.opts.tokens[..] else {
            panic!("{:?}", p.opts.tokens)
        };
        assert_eq!(r.token.as_deref(), Some("rev"));
        assert!(!r.allow_manage_connector);
        let s = r.socks.as_ref().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 9870));
        assert!(s.credentials.is_none());
        assert_eq!((ct.as_str(), of.as_str()), ("gen1", "rev"));
        assert_eq!(
            p.banner,
            [
                "Configuration:",
                "  Mode: reverse proxy (SOCKS5 on server -> client -> network)",
                "  Token: rev",
                "  SOCKS5 port: 9870",
                "  Connector Token: gen1",
            ]
        );
    }

    #[test]
    fn reverse_server_with_connector_token_and_credentials() {
        let p = srv(&[
            "-r", "-c", "conn", "-p", "1081", "-s", "0.0.0.0", "-n", "u", "-w", "pw", "-i",
        ]);
        let [TokenSpec::Reverse(r), TokenSpec::Connector(Some(ct), of)] = &p.opts.tokens[..] else {
            panic!("{:?}", p.opts.tokens)
        };
        assert_eq!(r.token.as_deref(), Some("gen1"));
        assert_eq!((ct.as_str(), of.as_str()), ("conn", "gen1"));
        let s = r.socks.as_ref().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 1081));
        assert!(s.credentials.as_ref().unwrap().matches(b"u", b"pw"));
        assert!(p.opts.machine.socks_nowait);
        assert_eq!(
            p.banner[2..],
            [
                "  Token: gen1",
                "  SOCKS5 port: 1081",
                "  Connector Token: conn",
                "  SOCKS5 username: u"
            ]
        );
    }

    #[test]
    fn autonomy_server_has_no_listener_and_no_connector_token() {
        let p = srv(&["-r", "-a", "-t", "prov"]);
        let [TokenSpec::Reverse(r)] = &p.opts.tokens[..] else {
            panic!("{:?}", p.opts.tokens)
        };
        assert_eq!(r.token.as_deref(), Some("prov"));
        assert!(r.socks.is_none());
        assert!(r.allow_manage_connector);
        assert!(p.opts.machine.connector_autonomy);
        assert_eq!(
            p.banner,
            [
                "Configuration:",
                "  Mode: reverse proxy (SOCKS5 on server -> client -> network)",
                "  Token: prov",
                "  SOCKS5 port: -1",
                "  Connector autonomy: enabled",
            ]
        );
        let p = srv(&["-r", "-a", "-c", "x"]);
        assert_eq!(p.opts.tokens.len(), 1);
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("--connector-token is ignored")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn server_machine_settings() {
        let p = srv(&[
            "-f",
            "--connector-wait-provider",
            "2m",
            "-b",
            "4096",
            "--batch",
            "immediate",
            "-k",
            "key",
            "-t",
            "t",
        ]);
        let m = &p.opts.machine;
        assert!(m.fast_open);
        assert_eq!(m.timings.connector_wait_provider, Duration::from_secs(120));
        assert_eq!(m.data.max_batch, 4096);
        assert_eq!(m.data.batch, BatchPolicy::Immediate);
        assert_eq!(p.opts.api_keys, ["key"]);
        assert_eq!(p.opts.tokens.len(), 1);
        // Without -b the core's default batch stays.
        assert_eq!(
            srv(&[]).opts.machine.data.max_batch,
            DataConfig::default().max_batch
        );
    }

    #[test]
    fn api_key_alone_adds_no_tokens() {
        let p = srv(&["-k", "key"]);
        assert!(p.opts.tokens.is_empty());
        assert!(p.banner[1].contains("HTTP API only"), "{:?}", p.banner);
    }

    #[test]
    fn buffer_and_message_size_must_agree() {
        let a = server_args(&["-b", "2MiB", "--max-message-size", "1MiB"]);
        assert!(matches!(
            server(&a, &no_env(), &mut Seq(0)),
            Err(CliError::Usage(_))
        ));
        let p = srv(&["--max-message-size", "16KiB"]);
        assert_eq!(p.opts.machine.data.max_batch, (16 << 10) - DATA_HEADER_LEN);
        assert_eq!(p.opts.machine.data.max_inflated, 16 << 10);
        let a = server_args(&["--max-message-size", "100"]);
        assert!(server(&a, &no_env(), &mut Seq(0)).is_err());
    }

    #[test]
    fn half_a_credential_pair_is_refused() {
        let a = server_args(&["-r", "-n", "u"]);
        let e = server(&a, &no_env(), &mut Seq(0)).unwrap_err();
        assert!(e.to_string().contains("--socks-password"), "{e}");
    }

    #[test]
    fn same_connector_and_reverse_token_is_refused() {
        let a = server_args(&["-r", "-t", "same", "-c", "same"]);
        assert!(server(&a, &no_env(), &mut Seq(0)).is_err());
    }

    #[test]
    fn server_env_fallbacks_and_flag_precedence() {
        let m: HashMap<&str, &str> = [
            ("LINKSOCKS_TOKEN", " envtok "),
            ("LINKSOCKS_CONNECTOR_TOKEN", "envconn"),
            ("LINKSOCKS_WEBSOCKET_HOST", "127.0.0.2"),
            ("LINKSOCKS_WEBSOCKET_PORT", "9000"),
            ("LINKSOCKS_SOCKS_HOST", "   "),
            ("LINKSOCKS_SOCKS_PORT", "1085"),
            ("LINKSOCKS_SOCKS_USERNAME", "eu"),
            ("LINKSOCKS_SOCKS_PASSWORD", "ep"),
            ("LINKSOCKS_API_KEY", "ek"),
            ("LINKSOCKS_FASTOPEN", "yes"),
            ("LINKSOCKS_UPSTREAM_PROXY", "socks5://p:1"),
        ]
        .into_iter()
        .collect();
        let env = Env::from_fn(|k| m.get(k).map(|v| v.to_string()));
        let p = server(&server_args(&["-r", "-P", "1"]), &env, &mut Seq(0)).unwrap();
        let [TokenSpec::Reverse(r), TokenSpec::Connector(Some(ct), _)] = &p.opts.tokens[..] else {
            panic!()
        };
        assert_eq!(r.token.as_deref(), Some("envtok"));
        assert_eq!(ct, "envconn");
        let s = r.socks.as_ref().unwrap();
        // Whitespace-only host is ignored; host and port resolve independently.
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 1085));
        assert!(s.credentials.as_ref().unwrap().matches(b"eu", b"ep"));
        // The flag wins over LINKSOCKS_WEBSOCKET_PORT, the env fills the host.
        assert_eq!((p.opts.ws_host.as_str(), p.opts.ws_port), ("127.0.0.2", 1));
        assert_eq!(p.opts.api_keys, ["ek"]);
        assert!(p.opts.machine.fast_open);
        assert_eq!(p.opts.upstream_proxy.as_ref().unwrap().port, 1);

        let p = server(
            &server_args(&["-t", "flagtok", "-s", "::1"]),
            &env,
            &mut Seq(0),
        )
        .unwrap();
        assert!(matches!(&p.opts.tokens[..], [TokenSpec::Forward(Some(t))] if t == "flagtok"));
        // Env values for reverse-only settings in forward mode are not worth a warning.
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);

        let m2: HashMap<&str, &str> = [("LINKSOCKS_CONNECTOR_AUTONOMY", "1")]
            .into_iter()
            .collect();
        let env2 = Env::from_fn(|k| m2.get(k).map(|v| v.to_string()));
        let p = server(&server_args(&["-r"]), &env2, &mut Seq(0)).unwrap();
        assert!(p.opts.machine.connector_autonomy);
        assert_eq!(p.opts.tokens.len(), 1);
    }

    #[test]
    fn bad_env_values_are_usage_errors() {
        for (k, v) in [
            ("LINKSOCKS_FASTOPEN", "perhaps"),
            ("LINKSOCKS_CONNECTOR_AUTONOMY", "2"),
            ("LINKSOCKS_WEBSOCKET_PORT", "99999"),
            ("LINKSOCKS_SOCKS_PORT", "x"),
            ("LINKSOCKS_UPSTREAM_PROXY", "ftp://x"),
        ] {
            let env = Env::from_fn(move |key| (key == k).then(|| v.to_string()));
            let r = server(&server_args(&["-r"]), &env, &mut Seq(0));
            let Err(CliError::Usage(msg)) = r else {
                panic!("{k}={v} accepted")
            };
            assert!(!msg.contains('\n'));
        }
    }

    fn cli(cmd: &str, extra: &[&str]) -> ClientPlan {
        let kind = match cmd {
            "client" => ClientKind::Client,
            "provider" => ClientKind::Provider,
            _ => ClientKind::Connector,
        };
        client(kind, &client_args(cmd, extra), &no_env(), &mut Seq(0)).unwrap()
    }

    #[test]
    fn forward_client_defaults() {
        let p = cli("client", &["-t", "tok"]);
        let m = &p.opts.machine;
        assert_eq!(m.url, "ws://localhost:8765");
        assert_eq!(m.token.as_deref(), Some("tok"));
        assert_eq!(m.role, ClientRole::Forward);
        let s = m.socks.as_ref().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 9870));
        assert_eq!(
            (
                m.threads,
                m.reconnect,
                m.retry_auth,
                m.fast_open,
                m.socks_no_wait
            ),
            (1, true, false, false, false)
        );
        assert_eq!(m.instance, InstanceId([7; 16]));
        assert_eq!(m.connector_token, None);
        assert!(p.opts.env_proxy.is_some());
        // No token means the literal "anonymous", which the machine presents for None.
        assert_eq!(cli("client", &[]).opts.machine.token, None);
    }

    #[test]
    fn client_flags_map_onto_the_machine() {
        let p = cli(
            "client",
            &[
                "-u",
                "https://h:1/x",
                "-s",
                "::1",
                "-p",
                "0",
                "-n",
                "a",
                "-w",
                "b",
                "-i",
                "-R",
                "--retry-auth",
                "-T",
                "4",
                "-E",
                "-f",
                "-x",
                "http://u:p@h",
            ],
        );
        let m = &p.opts.machine;
        assert_eq!(m.url, "https://h:1/x");
        let s = m.socks.as_ref().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 0));
        assert!(s.credentials.as_ref().unwrap().matches(b"a", b"b"));
        assert_eq!(
            (
                m.threads,
                m.reconnect,
                m.retry_auth,
                m.fast_open,
                m.socks_no_wait
            ),
            (4, false, true, true, true)
        );
        assert!(p.opts.env_proxy.is_none());
        assert_eq!(
            p.opts.upstream_proxy.as_ref().unwrap().kind,
            ProxyKind::Http
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("UDP")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn threads_are_clamped() {
        assert_eq!(cli("client", &["-T", "0"]).opts.machine.threads, 1);
        assert_eq!(cli("client", &["-T", "-3"]).opts.machine.threads, 1);
        let p = cli("client", &["-T", "1000"]);
        assert_eq!(p.opts.machine.threads, 100);
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn provider_and_client_r_are_providers() {
        for p in [
            cli("provider", &["-t", "r", "-c", "ct"]),
            cli("client", &["-r", "-t", "r", "-c", "ct"]),
        ] {
            let m = &p.opts.machine;
            assert_eq!(m.role, ClientRole::Provider);
            assert!(m.socks.is_none());
            assert_eq!(m.token.as_deref(), Some("r"));
            assert_eq!(m.connector_token.as_deref(), Some("ct"));
        }
        assert_eq!(cli("provider", &[]).opts.machine.connector_token, None);
        let p = cli("provider", &["-p", "1"]);
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("no effect on a provider")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn forward_client_ignores_connector_token_with_a_warning() {
        let p = cli("client", &["-c", "ct"]);
        assert_eq!(p.opts.machine.connector_token, None);
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn connector_takes_its_token_from_t_or_c() {
        let m = cli("connector", &["-c", "ctok"]).opts.machine;
        assert_eq!(
            (m.role, m.token.as_deref(), m.connector_token.as_deref()),
            (ClientRole::Forward, Some("ctok"), None)
        );
        assert!(m.socks.is_some());
        assert_eq!(
            cli("connector", &["-t", "t1"])
                .opts
                .machine
                .token
                .as_deref(),
            Some("t1")
        );
        let p = cli("connector", &["-t", "t1", "-c", "c1"]);
        assert_eq!(p.opts.machine.token.as_deref(), Some("t1"));
        assert_eq!(p.warnings.len(), 1);
        let r = client(
            ClientKind::Connector,
            &client_args("connector", &["-r"]),
            &no_env(),
            &mut Seq(0),
        );
        assert!(matches!(r, Err(CliError::Usage(_))));
        // From the environment: LINKSOCKS_TOKEN first, then LINKSOCKS_CONNECTOR_TOKEN.
        let env = Env::from_fn(|k| (k == "LINKSOCKS_CONNECTOR_TOKEN").then(|| "envc".to_string()));
        let p = client(
            ClientKind::Connector,
            &client_args("connector", &[]),
            &env,
            &mut Seq(0),
        )
        .unwrap();
        assert_eq!(p.opts.machine.token.as_deref(), Some("envc"));
    }

    #[test]
    fn client_env_fallbacks() {
        let m: HashMap<&str, &str> = [
            ("LINKSOCKS_URL", " wss://relay.example "),
            ("LINKSOCKS_TOKEN", "et"),
            ("LINKSOCKS_SOCKS_HOST", "0.0.0.0"),
            ("LINKSOCKS_SOCKS_PORT", "1080"),
            ("LINKSOCKS_FASTOPEN", "false"),
            ("LINKSOCKS_CONNECTOR_TOKEN", "ec"),
        ]
        .into_iter()
        .collect();
        let env = Env::from_fn(|k| m.get(k).map(|v| v.to_string()));
        let p = client(
            ClientKind::Client,
            &client_args("client", &["-p", "2000"]),
            &env,
            &mut Seq(0),
        )
        .unwrap();
        let mc = &p.opts.machine;
        assert_eq!(mc.url, "wss://relay.example");
        assert_eq!(mc.token.as_deref(), Some("et"));
        let s = mc.socks.as_ref().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 2000));
        assert!(!mc.fast_open);
        assert_eq!(mc.connector_token, None);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let p = client(
            ClientKind::Provider,
            &client_args("provider", &["-t", "flag"]),
            &env,
            &mut Seq(0),
        )
        .unwrap();
        assert_eq!(p.opts.machine.token.as_deref(), Some("flag"));
        assert_eq!(p.opts.machine.connector_token.as_deref(), Some("ec"));
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        // A bare host is accepted as wss:// (the reference's rule), so it is not listed here.
        for u in ["ftp://h", "ws://", ""] {
            let r = client(
                ClientKind::Client,
                &client_args("client", &["-u", u]),
                &no_env(),
                &mut Seq(0),
            );
            if u.is_empty() {
                // `-u ""` counts as not given, like the reference: the default URL applies.
                assert!(r.is_ok());
            } else {
                assert!(matches!(r, Err(CliError::Usage(_))), "{u:?} accepted");
            }
        }
    }

    #[test]
    fn p2p_flags_only_warn() {
        let p = cli("client", &["--direct-mode", "auto", "--stun-server", "s:1"]);
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].contains("--direct-mode, --stun-server")
                && p.warnings[0].contains("peer-to-peer")
        );
        let p = srv(&["--direct-enable"]);
        assert_eq!(p.warnings.len(), 1);
    }

    fn rules(specs: &[&str]) -> AccessRules {
        AccessRules::parse_cli(specs).unwrap()
    }

    #[test]
    fn several_api_keys_from_flags_or_the_environment() {
        let p = srv(&["-k", "a", "--api-key", "b,c", "-k", ""]);
        // A flag's value is one key, commas and all; empty ones are dropped.
        assert_eq!(p.opts.api_keys, ["a", "b,c"]);
        let env = Env::from_fn(|k| (k == "LINKSOCKS_API_KEY").then(|| " k1 , ,k2,, ".into()));
        let p = server(&server_args(&[]), &env, &mut Seq(0)).unwrap();
        assert_eq!(p.opts.api_keys, ["k1", "k2"]);
        assert!(p.opts.tokens.is_empty(), "API only: {:?}", p.opts.tokens);
        // A flag wins over the environment.
        let p = server(&server_args(&["-k", "f"]), &env, &mut Seq(0)).unwrap();
        assert_eq!(p.opts.api_keys, ["f"]);
        let env = Env::from_fn(|k| (k == "LINKSOCKS_API_KEY").then(|| " , ".into()));
        let p = server(&server_args(&[]), &env, &mut Seq(0)).unwrap();
        assert!(p.opts.api_keys.is_empty());
        assert_eq!(p.opts.tokens.len(), 1);
    }

    #[test]
    fn access_rules_go_where_the_reference_puts_them() {
        // Forward server: its dial rules.
        let p = srv(&[
            "--access-rule",
            "10.0.0.0/8:22",
            "--access-rule",
            "::1:80-90",
        ]);
        assert_eq!(
            p.opts.machine.access.dial,
            rules(&["10.0.0.0/8:22", "::1:80-90"])
        );
        assert!(p.opts.machine.access.entry.is_empty());
        assert!(matches!(&p.opts.tokens[..], [TokenSpec::Forward(_)]));
        assert_eq!(
            p.banner.last().unwrap(),
            "  Access rules: 10.0.0.0/8:22, ::1:80-90"
        );
        // Reverse server: the reverse token's, not the connector token's nor the server's.
        let p = srv(&["-r", "-t", "rev", "--access-rule", "127.0.0.1:22"]);
        assert_eq!(p.opts.machine.access, Default::default());
        let [TokenSpec::WithRules(r, rr), TokenSpec::Connector(_, of)] = &p.opts.tokens[..] else {
            panic!("{:?}", p.opts.tokens)
        };
        assert!(matches!(&**r, TokenSpec::Reverse(s) if s.token.as_deref() == Some("rev")));
        assert_eq!((rr, of.as_str()), (&rules(&["127.0.0.1:22"]), "rev"));
        // Client and connector: entry rules; provider and client -r: dial rules.
        for cmd in ["client", "connector"] {
            let m = cli(cmd, &["--access-rule", "192.168.1.1-255:443"])
                .opts
                .machine;
            assert_eq!(*m.entry_rules, rules(&["192.168.1.1-255:443"]), "{cmd}");
            assert!(m.data.dial_rules.is_empty(), "{cmd}");
        }
        for (cmd, extra) in [("provider", None), ("client", Some("-r"))] {
            let mut a = vec!["--access-rule", "10.0.0.1-10.0.0.9:1-1024"];
            a.extend(extra);
            let m = cli(cmd, &a).opts.machine;
            assert_eq!(*m.data.dial_rules, rules(&["10.0.0.1-10.0.0.9:1-1024"]));
            assert!(m.entry_rules.is_empty());
        }
        // None given: nothing anywhere.
        let m = cli("client", &[]).opts.machine;
        assert!(m.entry_rules.is_empty() && m.data.dial_rules.is_empty());
    }

    #[test]
    fn bad_access_rules_are_usage_errors_with_the_parser_s_message() {
        for bad in [
            "10.0.0.1",
            "[::1]:22",
            "example.com:22",
            "10.0.0.0/8:0",
            ":22",
        ] {
            let a = server_args(&["--access-rule", bad]);
            let Err(CliError::Usage(msg)) = server(&a, &no_env(), &mut Seq(0)) else {
                panic!("{bad} accepted by server")
            };
            let want = AccessRules::parse_cli([bad]).unwrap_err().to_string();
            assert_eq!(msg, want);
            let r = client(
                ClientKind::Provider,
                &client_args("provider", &["--access-rule", bad]),
                &no_env(),
                &mut Seq(0),
            );
            assert!(matches!(r, Err(CliError::Usage(m)) if m == want), "{bad}");
        }
    }

    #[test]
    fn access_rules_with_an_api_key_are_refused() {
        for extra in [
            &["-k", "key"][..],
            &["-k", "key", "-r"],
            &["-k", "key", "-t", "t"],
        ] {
            let mut a = vec!["--access-rule", "10.0.0.0/8:22"];
            a.extend_from_slice(extra);
            let r = server(&server_args(&a), &no_env(), &mut Seq(0));
            assert_eq!(
                r.unwrap_err(),
                CliError::Usage(
                    "--access-rule is not allowed in API server mode; \
                     configure access control through the HTTP API"
                        .into()
                ),
                "{a:?}"
            );
        }
        // The key from the environment counts too.
        let env = Env::from_fn(|k| (k == "LINKSOCKS_API_KEY").then(|| "k".into()));
        let a = server_args(&["--access-rule", "10.0.0.0/8:22"]);
        assert!(server(&a, &env, &mut Seq(0)).is_err());
    }

    #[test]
    fn every_reference_p2p_flag_is_accepted_with_one_warning() {
        let p = srv(&[
            "--direct-enable",
            "--direct-rendezvous-udp=true",
            "--direct-rendezvous-host",
            "0.0.0.0",
            "--direct-rendezvous-port",
            "3478",
        ]);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0].starts_with(
                "--direct-enable, --direct-rendezvous-udp, --direct-rendezvous-host, \
                 --direct-rendezvous-port ignored"
            ),
            "{:?}",
            p.warnings
        );
        for cmd in ["client", "provider", "connector"] {
            let p = cli(
                cmd,
                &[
                    "--direct-mode",
                    "direct-only",
                    "--direct-discovery",
                    "auto",
                    "--direct-host-candidates",
                    "never",
                    "--stun-server",
                    "stun.example:3478",
                    "--direct-only-action",
                    "refuse",
                    "--direct-upnp",
                    "--direct-upnp-lease",
                    "30m",
                    "--direct-upnp-keep=true",
                    "--direct-upnp-external-port",
                    "0",
                ],
            );
            let p2p: Vec<&String> = p
                .warnings
                .iter()
                .filter(|w| w.contains("peer-to-peer"))
                .collect();
            assert_eq!(p2p.len(), 1, "{cmd}: {:?}", p.warnings);
            for flag in [
                "--direct-mode",
                "--direct-discovery",
                "--direct-host-candidates",
                "--stun-server",
                "--direct-only-action",
                "--direct-upnp,",
                "--direct-upnp-lease",
                "--direct-upnp-keep",
                "--direct-upnp-external-port",
            ] {
                assert!(p2p[0].contains(flag), "{cmd}: {flag} not in {}", p2p[0]);
            }
        }
    }

    #[test]
    fn generated_tokens_are_16_lowercase_hex() {
        let mut r = OsRng;
        let a = r.token();
        let b = r.token();
        assert_eq!(a.len(), 16);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
        assert_ne!(r.instance(), r.instance());
    }
}
