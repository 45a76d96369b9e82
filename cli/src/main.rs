//! `linksocks-cli`: the command-line front end (spec section 9, reference notes sections 12
//! and 17).
//!
//! Exit codes: 0 after a normal or signalled stop, 1 when the server or client failed while
//! running, 2 for anything wrong before starting (flags, `LINKSOCKS_*` values, URLs). Every
//! failure prints exactly one `error: ...` line on stderr.

// The doc comments of the argument structs are the `--help` texts, written for a terminal
// (`socks5://[user[:pass]@]host`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 `mimalloc.h`: the enumerator after
/// `mi_option_eager_commit_delay`, 14, which libmimalloc-sys names; it does not name this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory a burst freed goes back to the system at once rather than 10 ms later: half the peak
/// resident memory of a 1 GiB transfer (about 50 -> 25 MiB on the receiving side), at no CPU
/// cost we could measure (the buffers in use are reused, not purged).
fn tune_allocator() {
    // SAFETY: sets a plain integer option; mimalloc reads it whenever it considers purging.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

mod args;
mod config;
mod env;
mod error;
mod parse;
use linksocks_runtime::proxy_url;
mod rt;

use std::ffi::OsString;
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use clap::{CommandFactory, FromArgMatches};
use linksocks_runtime::{ClientBuilder, Error, Event, Running, ServerBuilder, StopHandle};
use tracing::{debug, info, warn};
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::config::{ClientKind, OsRng};
use crate::env::Env;
use crate::error::{one_line, CliError};

fn main() -> ExitCode {
    tune_allocator();
    install_panic_hook();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mode = std::env::var("LINKSOCKS_MODE").ok();
    let argv = env::apply_mode(argv, mode.as_deref());
    let cli = match parse_args(argv) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// `0.1.0 (protocol 0x01, runtime smol)`.
fn version() -> String {
    format!(
        "{} (protocol 0x{:02x}, runtime {})",
        env!("CARGO_PKG_VERSION"),
        linksocks_core::wire::PROTOCOL_VERSION,
        rt::NAME
    )
}

fn parse_args(argv: Vec<OsString>) -> Result<Cli, ExitCode> {
    // clap wants a 'static version string; this runs once per process.
    let version: &'static str = Box::leak(version().into_boxed_str());
    let matches = Cli::command()
        .version(version)
        .try_get_matches_from(argv)
        .map_err(report_clap)?;
    Cli::from_arg_matches(&matches).map_err(report_clap)
}

/// Help and `--version` print as clap renders them; real errors are cut to their first line
/// (clap adds usage and tips below it) so every failure of this program looks alike.
fn report_clap(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(e.exit_code() as u8)
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("error: invalid arguments");
            let first = if first.starts_with("error:") {
                first.to_string()
            } else {
                format!("error: {first}")
            };
            eprintln!("{} (see --help)", one_line(&first));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let env = Env::process();
    match cli.command {
        Command::Version => {
            println!("linksocks-cli {}", version());
            Ok(())
        }
        Command::Server(a) => {
            let plan = config::server(&a, &env, &mut OsRng)?;
            print_warnings(&plan.warnings);
            init_logging(a.common.debug);
            for line in &plan.banner {
                println!("{line}");
            }
            if let Some(p) = &plan.opts.upstream_proxy {
                info!(
                    "Reaching targets through upstream proxy {}",
                    proxy_url::display(p)
                );
            }
            match plan.opts.api_keys.len() {
                0 => {}
                1 => info!("HTTP API enabled at /api/*"),
                n => info!("HTTP API enabled at /api/* ({n} keys)"),
            }
            drive(Role::Server, ServerBuilder::from(plan.opts).start(rt::Rt))
        }
        Command::Client(a) => run_client(ClientKind::Client, a, &env),
        Command::Provider(a) => run_client(ClientKind::Provider, a, &env),
        Command::Connector(a) => run_client(ClientKind::Connector, a, &env),
    }
}

fn run_client(kind: ClientKind, a: args::ClientArgs, env: &Env) -> Result<(), CliError> {
    let plan = config::client(kind, &a, env, &mut OsRng)?;
    print_warnings(&plan.warnings);
    init_logging(a.common.debug);
    let m = &plan.opts.machine;
    let role = match m.role {
        linksocks_core::session::ClientRole::Forward => Role::Forward,
        linksocks_core::session::ClientRole::Provider => Role::Provider,
    };
    info!(
        "Starting {} to {} ({} link{})",
        match (kind, role) {
            (ClientKind::Connector, _) => "connector",
            (_, Role::Provider) => "reverse provider",
            _ => "forward client",
        },
        m.url,
        m.threads,
        if m.threads == 1 { "" } else { "s" }
    );
    if let Some(p) = &plan.opts.upstream_proxy {
        info!(
            "Reaching the server through upstream proxy {}",
            proxy_url::display(p)
        );
    }
    drive(
        role,
        async move { ClientBuilder::from(plan.opts).start(rt::Rt) },
    )
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {}", one_line(w));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Server,
    Forward,
    Provider,
}

/// Start a server or client and run it until it ends or a signal stops it, logging its
/// events meanwhile.
fn drive<H: Running>(
    role: Role,
    start: impl Future<Output = Result<H, Error>>,
) -> Result<(), CliError> {
    let stopper = Arc::new(Stopper::default());
    install_signal_handler(stopper.clone());
    rt::apply_thread_count();
    let result = rt::block_on(async move {
        let running = start.await?;
        stopper.attach(running.stop_handle());
        let events = running.events();
        // The printer never finishes on its own: it ends with the run.
        let printer = async {
            while let Some(ev) = events.recv().await {
                log_event(role, ev);
            }
            std::future::pending::<Result<(), Error>>().await
        };
        let r = futures_lite::future::or(running.wait(), printer).await;
        while let Some(ev) = events.try_recv() {
            log_event(role, ev);
        }
        r
    });
    match result {
        Ok(()) => {
            info!("Stopped");
            Ok(())
        }
        Err(e) => Err(CliError::Run(e.to_string())),
    }
}

/// Where a signal's stop goes: the running server's or client's handle, or (when the signal
/// came while it was starting) a note that stops it as soon as it runs.
#[derive(Default)]
struct Stopper {
    handle: Mutex<Option<StopHandle>>,
    asked: std::sync::atomic::AtomicBool,
}

impl Stopper {
    fn attach(&self, h: StopHandle) {
        let mut slot = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        if self.asked.load(Ordering::SeqCst) {
            h.stop();
        }
        *slot = Some(h);
    }

    fn stop(&self) {
        let slot = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        self.asked.store(true, Ordering::SeqCst);
        if let Some(h) = slot.as_ref() {
            h.stop();
        }
    }
}

fn log_event(role: Role, ev: Event) {
    // The runtime and core already log listening addresses, authentication, Partners and
    // connector tokens at info; repeating them here would print every line twice, so the
    // CLI's own lines are debug-level detail.
    match ev {
        Event::WebSocketListening(a) => debug!("WebSocket server listening on {a}"),
        Event::SocksListening(a) => debug!("SOCKS5 proxy ready on {a}"),
        Event::LinkUp if role == Role::Server => debug!("A client link authenticated"),
        Event::LinkUp => debug!("Connected to the server"),
        Event::LinkDown { reason } => debug!("A link ended: {reason}"),
        Event::AuthRefused { reason } => debug!("Token refused: {reason}"),
        // On stdout like the server's "Configuration:" block: it is what the user copies
        // into the connector's command line, and scripts read it from there.
        Event::ConnectorToken(t) => println!("Connector Token: {t}"),
        Event::Partners(n) => match role {
            Role::Provider => debug!("Connectors online: {n}"),
            _ => debug!("Partners online: {n}"),
        },
        Event::Dialing(target) => debug!("Dialing {target}"),
        _ => {}
    }
}

/// First Ctrl-C/SIGTERM: graceful stop. Second: exit at once, for a stop that hangs.
fn install_signal_handler(handle: Arc<Stopper>) {
    static SIGNALS: AtomicUsize = AtomicUsize::new(0);
    let r = ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            info!("Shutting down (press Ctrl-C again to exit at once)");
            handle.stop();
        } else {
            eprintln!("error: interrupted again; exiting without a clean stop");
            std::process::exit(130);
        }
    });
    if let Err(e) = r {
        warn!(
            "cannot install the Ctrl-C/SIGTERM handler: {e}; signals will end the process abruptly"
        );
    }
}

/// `info` for our crates and `warn` for dependencies by default; `-d` debug, `-dd` trace;
/// `RUST_LOG` replaces all of it.
fn init_logging(debug: u8) {
    let level = match debug {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Targets match by prefix, so `linksocks` covers linksocks_cli, linksocks_core,
    // linksocks_runtime and both runtime adapters.
    let default = format!("warn,linksocks={level}");
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v.trim()).unwrap_or_else(|e| {
            eprintln!(
                "warning: ignoring invalid RUST_LOG: {}",
                one_line(&e.to_string())
            );
            EnvFilter::new(&default)
        }),
        _ => EnvFilter::new(&default),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(debug > 0)
        .try_init();
}

/// A panic is a bug, but the user should still see one line rather than a dump. With
/// RUST_BACKTRACE set the default hook runs, for whoever debugs it.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{at} (a bug; RUST_BACKTRACE=1 shows details)",
            one_line(&msg)
        );
    }));
}
