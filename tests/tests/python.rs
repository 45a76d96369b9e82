//! The Python package (`python/`, issue 20) as its users get it: built and installed with pip
//! into a virtual environment (maturin compiles the extension), then its pytest suite, which
//! runs servers and clients on loopback through the package's API.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_package_and_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyvenv");
    let bin = |name: &str| venv.join("bin").join(name);
    if !bin("pytest").exists() {
        run(
            "creating the venv (python3 -m venv; Debian needs python3-venv)",
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
        );
        run(
            "installing pytest",
            Command::new(bin("pip")).args([
                "install",
                "-q",
                "--disable-pip-version-check",
                "pytest",
            ]),
        );
    }
    run(
        "pip install ./python",
        Command::new(bin("pip"))
            .args([
                "install",
                "-q",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(root.join("python")),
    );
    run(
        "pytest python/tests",
        Command::new(bin("pytest"))
            .args(["-q", "-p", "no:cacheprovider"])
            .arg(root.join("python/tests"))
            .current_dir(root),
    );
}
