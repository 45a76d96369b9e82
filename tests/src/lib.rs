//! Test support for LinkSocks.
//!
//! - [`sim`]: the deterministic simulation harness that drives the sans-IO machines of
//!   `linksocks-core` over simulated WebSocket links, sockets and targets in virtual time.
//!   The scenarios live in `tests/sim_*.rs`.
//! - [`e2e`]: our proxies on real loopback sockets, with the applications, targets,
//!   reference implementation and daemons around them. The tests live in `tests/e2e_*.rs`.

pub mod e2e;
pub mod sim;
