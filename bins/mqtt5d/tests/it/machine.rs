//! What the end-to-end tests need from the machine, checked once, before the first broker
//! starts (or the first certificate is made). When something is missing, every test that needs
//! the machine fails with one message that names each missing piece and the Debian package
//! that provides it. Nothing is skipped.
//!
//! - `mosquitto_pub` and `mosquitto_sub`: the Debian package `mosquitto-clients`;
//! - `openssl` (the TLS tests make their certificates with it): the Debian package `openssl`;
//! - the IPv6 loopback `[::1]` (the IPv6 listener test);
//! - a Python interpreter with paho-mqtt 2: `MQTT5_PYTHON`, which `scripts/test-all.sh` sets to
//!   the virtual environment it builds from `scripts/python-requirements.txt`
//!   (`target/test-venv`). Without the variable, that environment is used where it exists.
//!
//! `scripts/test-all.sh` checks and installs the same things before it builds anything.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// What the machine provides to the tests.
pub(crate) struct Machine {
    /// The Python interpreter with paho-mqtt.
    python: PathBuf,
}

/// The result of the one check.
static MACHINE: OnceLock<Result<Machine, String>> = OnceLock::new();

/// The machine, checked on the first call; panics with the list of what is missing.
pub(crate) fn machine() -> &'static Machine {
    match MACHINE.get_or_init(check) {
        Ok(machine) => machine,
        Err(missing) => panic!("{missing}"),
    }
}

/// The Python interpreter that has paho-mqtt.
pub(crate) fn python() -> &'static Path {
    &machine().python
}

/// Whether `program` can be started at all (whatever its exit status).
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn check() -> Result<Machine, String> {
    let mut missing = Vec::new();
    if !runs("mosquitto_pub", "--help") || !runs("mosquitto_sub", "--help") {
        missing.push(
            "mosquitto_pub / mosquitto_sub: install the Debian package mosquitto-clients"
                .to_owned(),
        );
    }
    if !runs("openssl", "version") {
        missing.push("openssl: install the Debian package openssl".to_owned());
    }
    if let Err(e) = TcpListener::bind("[::1]:0") {
        missing.push(format!(
            "the IPv6 loopback [::1] ({e}): enable IPv6 on lo (sysctl net.ipv6.conf.lo.disable_ipv6=0)"
        ));
    }
    let python = std::env::var_os("MQTT5_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python3"),
        PathBuf::from,
    );
    let paho = Command::new(&python)
        .args([
            "-c",
            "import paho.mqtt; assert paho.mqtt.__version__.startswith('2.')",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !paho {
        missing.push(format!(
            "a Python with paho-mqtt 2 at {} (MQTT5_PYTHON): run scripts/test-all.sh once, which \
             builds that virtual environment from scripts/python-requirements.txt (it needs the \
             Debian package python3-venv), or set MQTT5_PYTHON to such an interpreter",
            python.display()
        ));
    }
    if missing.is_empty() {
        Ok(Machine { python })
    } else {
        Err(format!(
            "the end-to-end tests need from this machine:\n  - {}",
            missing.join("\n  - ")
        ))
    }
}
