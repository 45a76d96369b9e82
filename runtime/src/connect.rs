//! Dialling a target: resolve on this side (the spec puts resolution on the dialling side),
//! then try each address in turn.

use linksocks_core::addr::TargetAddr;

use crate::Runtime;

/// Connect to `target`; the error text reads like the reference's (`dial tcp ...`), since it
/// travels to the far side in ConnectResponse.
pub async fn connect_target<R: Runtime>(rt: &R, target: &TargetAddr) -> Result<R::Tcp, String> {
    let addrs = match target {
        TargetAddr::Ip(a) => vec![*a],
        TargetAddr::Domain(host, port) => match rt.resolve(host.clone(), *port).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return Err(format!("dial tcp: lookup {host}: no such host")),
            Err(e) => return Err(format!("dial tcp: lookup {host}: {e}")),
        },
    };
    let mut last = String::new();
    for a in addrs {
        match rt.connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("dial tcp {a}: connect: {e}"),
        }
    }
    Err(last)
}
