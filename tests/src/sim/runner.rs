//! Running a scenario over many seeds, and replaying one.
//!
//! - `SIM_SEEDS=N`: seeds per scenario (default: the scenario's own count).
//! - `SIM_SEED=S`: run only seed `S` (with the trace kept, and shown on failure).
//! - `SIM_SEED_BASE=B`: start at seed `B` instead of 0 (explore new seeds).
//! - `SIM_LOG=debug` (with `SIM_SEED`): the core's own log lines as well.
//! - `SIM_KEEP_GOING=1`: run every seed and list all failing ones at the end.
//! - `SIM_TRACE=1`: keep the trace (written to a file when a run fails).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant as WallInstant;

use super::world::World;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "(non-text panic)".into()
    }
}

/// The command that replays one seed of one scenario.
pub fn replay_command(binary: &str, test: &str, seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test -p linksocks-tests --test {binary} -- {test} --exact --include-ignored")
}

/// Run `scenario` for every seed; a failure panics naming the seed and the replay command.
/// Every fourth seed runs twice and the two runs must be identical (see [`run_seeds_with`]).
pub fn run_seeds(binary: &str, test: &str, default_seeds: u64, scenario: impl Fn(u64) -> World) {
    run_seeds_with(binary, test, default_seeds, 4, scenario)
}

/// Run one seed (twice when `twice`, comparing the runs' fingerprints).
fn one(seed: u64, twice: bool, scenario: &impl Fn(u64) -> World) {
    let a = scenario(seed).fingerprint;
    if twice {
        let b = scenario(seed).fingerprint;
        assert_eq!(
            a, b,
            "two runs of seed {seed} differ: the simulation (or a machine) is not deterministic"
        );
    }
}

/// [`run_seeds`], with every `double_every`-th seed run twice to check determinism.
pub fn run_seeds_with(
    binary: &str,
    test: &str,
    default_seeds: u64,
    double_every: u64,
    scenario: impl Fn(u64) -> World,
) {
    if let Some(seed) = env_u64("SIM_SEED") {
        if let Ok(level) = std::env::var("SIM_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(level))
                .with_test_writer()
                .try_init();
        }
        eprintln!("[sim] {binary}::{test}: replaying seed {seed}");
        let r = catch_unwind(AssertUnwindSafe(|| one(seed, true, &scenario)));
        if let Err(p) = r {
            panic!(
                "{test}: seed {seed} failed: {}\nreplay: {}",
                panic_text(p.as_ref()),
                replay_command(binary, test, seed)
            );
        }
        return;
    }
    let n = env_u64("SIM_SEEDS").unwrap_or(default_seeds);
    let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
    let keep_going = std::env::var_os("SIM_KEEP_GOING").is_some();
    let mut failed: Vec<(u64, String)> = Vec::new();
    let start = WallInstant::now();
    for seed in base..base + n {
        let twice = double_every > 0 && seed % double_every == 0;
        let r = catch_unwind(AssertUnwindSafe(|| one(seed, twice, &scenario)));
        if let Err(p) = r {
            let text = panic_text(p.as_ref());
            if !keep_going {
                panic!(
                    "{test}: seed {seed} failed: {text}\nreplay: {}",
                    replay_command(binary, test, seed)
                );
            }
            failed.push((seed, text));
        }
    }
    if !failed.is_empty() {
        let first: Vec<String> = failed
            .iter()
            .take(20)
            .map(|(s, t)| format!("seed {s}: {}", t.lines().next().unwrap_or("")))
            .collect();
        panic!(
            "{test}: {} of {n} seeds failed:\n  {}\nreplay: {}",
            failed.len(),
            first.join("\n  "),
            replay_command(binary, test, failed[0].0)
        );
    }
    eprintln!(
        "[sim] {binary}::{test}: {n} seeds in {:.2?}",
        start.elapsed()
    );
}

/// Define a `#[test]` that runs a scenario over many seeds:
/// `sim_test!(name, seeds, scenario_fn);` where `scenario_fn: fn(u64) -> World`.
#[macro_export]
macro_rules! sim_test {
    ($(#[$m:meta])* $name:ident, $seeds:expr, $body:expr) => {
        $(#[$m])*
        #[test]
        fn $name() {
            $crate::sim::run_seeds(env!("CARGO_CRATE_NAME"), stringify!($name), $seeds, $body);
        }
    };
}
