//! Test support for LinkSocks.
//!
//! - [`sim`]: the deterministic simulation harness that drives the sans-IO machines of
//!   `linksocks-core` over simulated WebSocket links, sockets and targets in virtual time.
//!   The scenarios live in `tests/sim_*.rs`.

pub mod sim;
