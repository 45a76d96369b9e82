//! [`Running`]: what a started [`Server`] and [`Client`] have in common, for a program that
//! runs either one (the CLI does).

use std::future::Future;

use super::client::Client;
use super::events::Events;
use super::server::Server;
use crate::{Error, StopHandle};

/// A started server or client: its events, a handle that stops it, and its end.
pub trait Running {
    /// Its events from its start (see [`Events`]).
    fn events(&self) -> Events;
    /// A handle that stops it from anywhere.
    fn stop_handle(&self) -> StopHandle;
    /// Resolves when it has stopped: `Ok` after a stop, the reason otherwise.
    fn wait(&self) -> impl Future<Output = Result<(), Error>> + Send + '_;
}

macro_rules! running {
    ($t:ty) => {
        impl Running for $t {
            fn events(&self) -> Events {
                <$t>::events(self)
            }
            fn stop_handle(&self) -> StopHandle {
                <$t>::stop_handle(self)
            }
            fn wait(&self) -> impl Future<Output = Result<(), Error>> + Send + '_ {
                <$t>::wait(self)
            }
        }
    };
}

running!(Server);
running!(Client);
