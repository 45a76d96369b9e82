//! The library's front door: [`Server`] and [`Client`] built with [`ServerBuilder`] and
//! [`ClientBuilder`], started on a [`Runtime`](crate::Runtime), and controlled through the
//! handles `start` returns.

pub mod client;
pub mod events;
pub mod running;
pub mod server;
pub(crate) mod task;
