//! Dialling a target: resolve on this side (the spec puts resolution on the dialling side),
//! then try each address in turn; with access rules, only the addresses they allow.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use linksocks_core::access::AccessRules;
use linksocks_core::addr::TargetAddr;
use linksocks_core::session::{LinkId, DIAL_BLOCKED};
use tracing::info;

use crate::net::TcpStream;
use crate::{ProxyUrl, Rt};

/// Connect to `target`; the error text reads like the reference's (`dial tcp ...`), since it
/// travels to the far side in ConnectResponse.
pub async fn connect_target(rt: &Rt, target: &TargetAddr) -> Result<TcpStream, String> {
    let addrs = match target {
        TargetAddr::Ip(a) => vec![*a],
        TargetAddr::Domain(host, port) => match rt.resolve(host.clone(), *port).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return Err(format!("dial tcp: lookup {host}: no such host")),
            Err(e) => return Err(format!("dial tcp: lookup {host}: {e}")),
        },
    };
    connect_addrs(rt, addrs).await
}

/// Connect to the first of `addrs` that answers.
async fn connect_addrs(rt: &Rt, addrs: Vec<SocketAddr>) -> Result<TcpStream, String> {
    let mut last = String::from("dial tcp: no address");
    for a in addrs {
        match rt.connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("dial tcp {a}: connect: {e}"),
        }
    }
    Err(last)
}

/// The addresses of `target` that every one of `rules` allows, the name resolved once (so
/// what is checked is what is connected to). `Err` says why none is left: the name did not
/// resolve (denied, as the reference denies it), or no address passes.
pub async fn allowed_addrs(
    rt: &Rt,
    target: &TargetAddr,
    rules: &[Arc<AccessRules>],
) -> Result<Vec<SocketAddr>, String> {
    let addrs = match target {
        TargetAddr::Ip(a) => vec![*a],
        TargetAddr::Domain(host, port) => match rt.resolve(host.clone(), *port).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return Err("the name does not resolve".into()),
            Err(e) => return Err(format!("the name does not resolve: {e}")),
        },
    };
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| rules.iter().all(|r| r.check_ip(a.ip(), a.port())))
        .collect();
    if allowed.is_empty() {
        let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        return Err(format!("no address allowed of {}", shown.join(", ")));
    }
    Ok(allowed)
}

/// Dial `target` for `link`'s Connect under access `rules` (all must allow; see
/// `Output::Dial`): resolve once, connect only to the addresses allowed, directly or through
/// `upstream` by address; `allowed` is called once the rules passed, before connecting.
/// Nothing allowed: logged once and `Err` of exactly [`DIAL_BLOCKED`], the text the far side
/// gets in ConnectResponse.
pub async fn connect_allowed(
    rt: &Rt,
    upstream: Option<&ProxyUrl>,
    link: LinkId,
    target: &TargetAddr,
    rules: &[Arc<AccessRules>],
    allowed: impl FnOnce(),
) -> Result<(TcpStream, Bytes), String> {
    let addrs = match allowed_addrs(rt, target, rules).await {
        Ok(a) => a,
        Err(why) => {
            info!(%link, %target, "connect refused: destination blocked by access control ({why})");
            return Err(DIAL_BLOCKED.to_string());
        }
    };
    allowed();
    match upstream {
        None => connect_addrs(rt, addrs).await.map(|s| (s, Bytes::new())),
        Some(p) => {
            let mut last = String::new();
            for a in addrs {
                match crate::proxy::connect_via(rt, p, &TargetAddr::Ip(a)).await {
                    Ok(r) => return Ok(r),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}
