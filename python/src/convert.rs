//! Values crossing between Python and the engine: errors as exceptions, access rules from
//! their JSON form, durations.

use std::time::Duration;

use linksocks_runtime_smol::{AccessRules, Error};
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    linksocks_rs,
    LinkSocksError,
    pyo3::exceptions::PyRuntimeError,
    "What the LinkSocks engine reports; the subclasses say which case."
);
pyo3::create_exception!(
    linksocks_rs,
    AuthenticationError,
    LinkSocksError,
    "The server refused the token."
);
pyo3::create_exception!(
    linksocks_rs,
    BindError,
    LinkSocksError,
    "A port could not be opened (in use, not permitted, no such address)."
);
pyo3::create_exception!(
    linksocks_rs,
    ConnectError,
    LinkSocksError,
    "The server could not be reached (TLS, upstream proxy, refused, lost with reconnect off)."
);

/// The Python exception for an engine error.
pub fn to_py(e: Error) -> PyErr {
    let text = e.to_string();
    match e {
        Error::AuthRefused { .. } => AuthenticationError::new_err(text),
        Error::Bind { .. } => BindError::new_err(text),
        Error::Disconnected { .. }
        | Error::Unreachable { .. }
        | Error::Tls(_)
        | Error::UpstreamProxy { .. }
        | Error::Protocol { .. } => ConnectError::new_err(text),
        Error::Config(_) => PyValueError::new_err(text),
        Error::Timeout { .. } => PyTimeoutError::new_err(text),
        _ => LinkSocksError::new_err(text),
    }
}

/// Access rules from their JSON form (what `AccessRule` objects serialise to); `None` or an
/// empty list allows everything.
pub fn rules(json: Option<&str>) -> PyResult<AccessRules> {
    let Some(json) = json else {
        return Ok(AccessRules::default());
    };
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| PyValueError::new_err(format!("invalid access rules: {e}")))?;
    AccessRules::from_json_value(&value)
        .map_err(|e| PyValueError::new_err(format!("invalid access rules: {e}")))
}

/// Seconds (as Python's layer converts every duration form) to a `Duration`.
pub fn secs(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("{what} must be a non-negative duration, not {s}"))
            })
        })
        .transpose()
}
