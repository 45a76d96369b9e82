//! The built binary as a user meets it: help, version, one-line errors, exit codes, and a
//! signalled stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_linksocks-cli");

/// The binary with a clean environment: no LINKSOCKS_* or RUST_LOG from whoever runs the
/// tests may change what is being checked.
fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("LINKSOCKS_") || k == "RUST_LOG" || k == "RUST_BACKTRACE" {
            c.env_remove(k);
        }
    }
    c
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.stdin(Stdio::null()).output().expect("run linksocks-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// A failure before starting: exit 2, exactly one `error:` line on stderr, nothing on stdout,
/// and no panic.
#[track_caller]
fn assert_usage_error(c: &mut Command, mentions: &str) {
    let (out, stdout, stderr) = run(c);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(
        stderr.contains(mentions),
        "{stderr:?} does not mention {mentions:?}"
    );
    assert!(stdout.is_empty(), "{stdout:?}");
}

#[test]
fn help_of_each_subcommand_lists_its_flags() {
    let cases: &[(&str, &[&str])] = &[
        (
            "server",
            &[
                "--token",
                "--ws-host",
                "--ws-port",
                "--reverse",
                "--socks-host",
                "--socks-port",
                "--connector-token",
                "--connector-autonomy",
                "--socks-username",
                "--socks-password",
                "--socks-nowait",
                "--api-key",
                "--buffer-size",
                "--upstream-proxy",
                "--fast-open",
                "--connector-wait-provider",
                "--debug",
                "--batch",
                "--max-message-size",
                "-H,",
                "-P,",
                "-k,",
                "-b,",
                "-a,",
                "-i,",
            ],
        ),
        (
            "client",
            &[
                "--token",
                "--url",
                "--reverse",
                "--connector-token",
                "--socks-host",
                "--socks-port",
                "--socks-username",
                "--socks-password",
                "--socks-no-wait",
                "--no-reconnect",
                "--retry-auth",
                "--threads",
                "--upstream-proxy",
                "--no-env-proxy",
                "--fast-open",
                "--debug",
                "--batch",
                "--max-message-size",
                "-u,",
                "-R,",
                "-T,",
                "-E,",
                "ws://localhost:8765",
            ],
        ),
        (
            "provider",
            &[
                "--token",
                "--url",
                "--connector-token",
                "--threads",
                "--no-reconnect",
            ],
        ),
        (
            "connector",
            &[
                "--token",
                "--url",
                "--socks-port",
                "--socks-host",
                "--connector-token",
            ],
        ),
    ];
    for (sub, flags) in cases {
        let (out, stdout, stderr) = run(&mut cmd(&[sub, "--help"]));
        assert!(out.status.success(), "{sub} --help: {stderr}");
        for f in *flags {
            assert!(
                stdout.contains(f),
                "`{sub} --help` does not mention {f}:\n{stdout}"
            );
        }
        // The peer-to-peer flags are accepted but not advertised.
        assert!(!stdout.contains("--direct-"), "{stdout}");
    }
    let (out, stdout, _) = run(&mut cmd(&["--help"]));
    assert!(out.status.success());
    for sub in ["server", "client", "provider", "connector", "version"] {
        assert!(stdout.contains(sub), "{stdout}");
    }
}

#[test]
fn version_names_the_protocol_and_runtime() {
    let runtime = if cfg!(feature = "smol") {
        "runtime smol"
    } else {
        "runtime async-std"
    };
    let (out, stdout, _) = run(&mut cmd(&["version"]));
    assert!(out.status.success());
    assert_eq!(
        stdout.trim(),
        format!(
            "linksocks-cli {} (protocol 0x01, {runtime})",
            env!("CARGO_PKG_VERSION")
        )
    );
    let (out, stdout2, _) = run(&mut cmd(&["--version"]));
    assert!(out.status.success());
    assert_eq!(stdout2, stdout);
}

#[test]
fn bad_url_scheme() {
    assert_usage_error(&mut cmd(&["client", "-u", "ftp://example.com"]), "ftp");
    assert_usage_error(
        cmd(&["client"]).env("LINKSOCKS_URL", "gopher://x"),
        "gopher",
    );
}

#[test]
fn bad_boolean_environment_value() {
    assert_usage_error(
        cmd(&["server"]).env("LINKSOCKS_FASTOPEN", "maybe"),
        "LINKSOCKS_FASTOPEN",
    );
    assert_usage_error(
        cmd(&["client"]).env("LINKSOCKS_FASTOPEN", "2"),
        "LINKSOCKS_FASTOPEN",
    );
    assert_usage_error(
        cmd(&["server", "-r"]).env("LINKSOCKS_CONNECTOR_AUTONOMY", "sure"),
        "LINKSOCKS_CONNECTOR_AUTONOMY",
    );
}

#[test]
fn port_out_of_range() {
    assert_usage_error(&mut cmd(&["server", "-P", "70000"]), "70000");
    assert_usage_error(&mut cmd(&["client", "-p", "65536"]), "65536");
    assert_usage_error(
        cmd(&["server"]).env("LINKSOCKS_WEBSOCKET_PORT", "99999"),
        "LINKSOCKS_WEBSOCKET_PORT",
    );
    assert_usage_error(
        cmd(&["client"]).env("LINKSOCKS_SOCKS_PORT", "socks"),
        "LINKSOCKS_SOCKS_PORT",
    );
}

#[test]
fn other_usage_errors_are_one_line() {
    assert_usage_error(
        &mut cmd(&["server", "-x", "ftp://proxy"]),
        "unsupported upstream proxy scheme",
    );
    assert_usage_error(
        &mut cmd(&["client", "-x", "socks5://u:secret@h:0"]),
        "invalid port",
    );
    assert_usage_error(
        &mut cmd(&["server", "--connector-wait-provider", "soon"]),
        "soon",
    );
    assert_usage_error(&mut cmd(&["server", "--bogus"]), "--bogus");
    assert_usage_error(&mut cmd(&["serve"]), "serve");
    assert_usage_error(&mut cmd(&["connector", "-r"]), "provider");
    assert_usage_error(
        &mut cmd(&["server", "-r", "-n", "user"]),
        "--socks-password",
    );
    // A password in a bad proxy URL is not echoed back.
    let (_, _, stderr) = run(&mut cmd(&["client", "-x", "socks5://u:secret@h:0"]));
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn linksocks_mode_picks_the_subcommand() {
    let (out, stdout, stderr) = run(cmd(&["--help"]).env("LINKSOCKS_MODE", " Server "));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("--ws-host"), "{stdout}");
    let (out, stdout, _) = run(cmd(&["--help"]).env("LINKSOCKS_MODE", "reverse"));
    assert!(out.status.success());
    assert!(stdout.contains("linksocks-cli provider"), "{stdout}");
    // An explicit subcommand wins over the environment.
    let (out, stdout, _) = run(cmd(&["version"]).env("LINKSOCKS_MODE", "server"));
    assert!(out.status.success());
    assert!(stdout.starts_with("linksocks-cli "), "{stdout}");
    // A bad value in the chosen mode's environment fails like a flag would.
    assert_usage_error(
        cmd(&[])
            .env("LINKSOCKS_MODE", "client")
            .env("LINKSOCKS_URL", "ftp://x"),
        "ftp",
    );
}

/// A started server prints its configuration and stops cleanly (exit 0) on SIGTERM; a
/// reference peer-to-peer flag only costs a warning.
#[cfg(unix)]
#[test]
fn server_prints_configuration_and_stops_on_sigterm() {
    let mut child = cmd(&[
        "server",
        "-H",
        "127.0.0.1",
        "-P",
        "0",
        "-t",
        "tok123",
        "-r",
        "-p",
        "0",
        "-c",
        "conn456",
        "--direct-enable",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = Vec::new();
    for _ in 0..5 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        banner.push(line.trim_end().to_string());
    }
    assert_eq!(
        banner,
        [
            "Configuration:",
            "  Mode: reverse proxy (SOCKS5 on server -> client -> network)",
            "  Token: tok123",
            "  SOCKS5 port: 0",
            "  Connector Token: conn456",
        ]
    );
    // The signal must land on a running server, not one still starting: wait for its
    // "listening" line (stderr ends there if it died instead).
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut stderr = String::new();
    while !stderr.contains("listening on") {
        if err.read_line(&mut stderr).unwrap() == 0 {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::io::Read::read_to_string(&mut err, &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr
            .contains("warning: --direct-enable ignored: peer-to-peer transport is not supported"),
        "{stderr}"
    );
}

/// A failure while running (here: the port is taken) is exit 1 with one `error:` line.
#[test]
fn run_error_is_exit_1_with_one_error_line() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let mut c = cmd(&["server", "-H", "127.0.0.1", "-P", &port, "-t", "x"]);
    let (out, stdout, stderr) = run(&mut c);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stdout.starts_with("Configuration:"), "{stdout}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&port), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
