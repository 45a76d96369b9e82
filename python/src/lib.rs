//! `linksocks_rs._native`: the Rust engine under the `linksocks_rs` Python package. The
//! package's Python layer (`linksocks_rs/*.py`) gives it the reference package's API; this
//! module holds the state and does the waiting with the GIL released.

mod client;
mod convert;
mod executor;
mod logging;
mod server;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    let py = m.py();
    m.add("LinkSocksError", py.get_type::<convert::LinkSocksError>())?;
    m.add(
        "AuthenticationError",
        py.get_type::<convert::AuthenticationError>(),
    )?;
    m.add("BindError", py.get_type::<convert::BindError>())?;
    m.add("ConnectError", py.get_type::<convert::ConnectError>())?;
    m.add_class::<server::NativeServer>()?;
    m.add_class::<client::NativeClient>()?;
    m.add_function(wrap_pyfunction!(logging::set_native_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logging::next_records, m)?)?;
    m.add("ENGINE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
