//! Runs the real `mqtt5d` binary on an ephemeral loopback port, with its own temporary data
//! directory, and stops it by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) use crate::machine::python;

/// A running broker.
pub(crate) struct Mqtt5d {
    child: Option<Child>,
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    /// Its stderr log lines (JSON), as they arrive.
    log: mpsc::Receiver<String>,
    /// Every log line read so far.
    pub(crate) lines: Vec<String>,
}

impl Mqtt5d {
    /// Starts `mqtt5d` with `data_dir` and extra arguments, on 127.0.0.1 and a port the OS picks.
    pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start_raw(data_dir, &args)
    }

    /// Starts `mqtt5d` with `data_dir` and exactly these extra arguments (no `--listen`: the
    /// listeners come from a config file).
    pub(crate) fn start_raw(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_logging(data_dir, "debug", extra)
    }

    /// As [`Mqtt5d::start_raw`], with this log filter (`--log-level`).
    pub(crate) fn start_logging(data_dir: &Path, level: &str, extra: &[&str]) -> Self {
        Self::start_with(data_dir, level, extra, None)
    }

    /// [`start_raw`](Self::start_raw), with the process's umask set to `umask` (octal, e.g.
    /// `"022"`) first: it runs as `sh -c 'umask …; exec mqtt5d …'`, the same process.
    pub(crate) fn start_under_umask(data_dir: &Path, extra: &[&str], umask: &str) -> Self {
        Self::start_with(data_dir, "debug", extra, Some(umask))
    }

    /// Starts `mqtt5d` with this log filter, under `umask` when given.
    fn start_with(data_dir: &Path, level: &str, extra: &[&str], umask: Option<&str>) -> Self {
        crate::machine::machine();
        let mut args = vec![
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--log-format".to_owned(),
            "json".to_owned(),
            "--log-level".to_owned(),
            level.to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut command = match umask {
            None => mqtt5d_command(),
            Some(umask) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_mqtt5d"));
                sh
            }
        };
        let mut child = command
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mqtt5d starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut broker = Self {
            child: Some(child),
            addr: "127.0.0.1:1".parse().expect("address"),
            log,
            lines: Vec::new(),
        };
        let line = broker
            .wait_for_log("listening", Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!(
                    "mqtt5d did not start listening:\n{}",
                    broker.lines.join("\n")
                )
            });
        let addr = json_field(&line, "addr").expect("the listening line names its address");
        broker.addr = addr.parse().expect("a socket address");
        broker
    }

    /// The broker's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Waits (bounded) for a log line containing `needle`; returns it.
    pub(crate) fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(l) = self.lines.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// The address of its metrics endpoint (`[metrics] listen`), from its log (bounded wait).
    pub(crate) fn metrics_addr(&mut self) -> Result<SocketAddr, String> {
        let line = self
            .wait_for_log("metrics endpoint listening", Duration::from_secs(10))
            .ok_or("no metrics endpoint: the configuration has no [metrics] listen")?;
        json_field(&line, "addr")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("no address in {line}"))
    }

    /// Sends SIGTERM to the broker's PID and waits (bounded) for it to exit.
    pub(crate) fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal sent");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                // Drain the remaining log lines.
                while let Ok(line) = self.log.recv_timeout(Duration::from_millis(200)) {
                    self.lines.push(line);
                }
                return status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("mqtt5d did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL to the broker's PID, a crash: no shutdown, no final commit. Waits for it
    /// to exit (a SIGKILL cannot be caught, so the wait is short).
    pub(crate) fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("signal sent");
        let status = child.wait().expect("wait");
        // The log pipe closes with the process: this ends at its last line.
        while let Ok(line) = self.log.recv_timeout(Duration::from_millis(200)) {
            self.lines.push(line);
        }
        status
    }
}

impl Drop for Mqtt5d {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `broker` answers an MQTT 5 CONNECT on its address (anonymously): its event loop
/// runs, with its signal handlers in place.
pub(crate) fn serving(broker: &Mqtt5d) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(broker.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // CONNECT, MQTT 5, Clean Start, keep-alive 60, no properties, client id "probe".
    stream
        .write_all(b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x05probe")
        .expect("write");
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).expect("a CONNACK");
    assert_eq!(first[0], 0x20, "a CONNACK");
}

/// A command running the `mqtt5d` binary under test.
pub(crate) fn mqtt5d_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqtt5d"))
}

/// `mqtt5d user add NAME --password-stdin` on `data_dir`; it must succeed.
pub(crate) fn add_user(data_dir: &Path, name: &str, password: &str) {
    add_user_with(data_dir, None, name, password);
}

/// `mqtt5d user add NAME --password-stdin` on `data_dir`, with a configuration file when given
/// (SCRAM credentials are stored only when it enables SCRAM); it must succeed.
pub(crate) fn add_user_with(data_dir: &Path, config: Option<&Path>, name: &str, password: &str) {
    use std::io::Write as _;
    let mut command = mqtt5d_command();
    command.args(["--data-dir", &data_dir.display().to_string()]);
    if let Some(config) = config {
        command.args(["--config", &config.display().to_string()]);
    }
    let mut child = command
        .args(["user", "add", name, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mqtt5d user add runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "mqtt5d user add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mqtt5d acl add SCOPE ACCESS TOPIC` on `data_dir`; it must succeed.
pub(crate) fn add_acl(data_dir: &Path, scope: &str, access: &str, topic: &str) {
    let (status, out, err) = run_bounded(
        mqtt5d_command()
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["acl", "add", scope, access, topic]),
        Duration::from_secs(30),
    );
    assert!(status.success(), "mqtt5d acl add failed: {out}{err}");
}

/// The string value of `"key":"value"` in a JSON log line (tracing-subscriber's format puts
/// event fields under "fields").
pub(crate) fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

/// The body of `GET /metrics` from the broker's metrics endpoint at `addr`, or why not.
pub(crate) fn metrics_text(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| format!("request: {e}"))?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .map_err(|e| format!("response: {e}"))?;
    Ok(body)
}

/// Waits (bounded by `timeout`) until the metrics endpoint at `addr` shows `name` at
/// `value`. The broker renders the text at most twice a second, so it is asked again until
/// then; the error holds the last text.
pub(crate) fn wait_for_metric(
    addr: SocketAddr,
    name: &str,
    value: u64,
    timeout: Duration,
) -> Result<(), String> {
    let line = format!("\n{name} {value}\n");
    let end = Instant::now() + timeout;
    loop {
        let text = metrics_text(addr)?;
        if text.contains(&line) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("no {name} {value} within {timeout:?}:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh temporary directory for one test.
pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Runs a command to completion with a time limit; returns (status, stdout, stderr).
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status,
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The path of the broker's database in `data_dir`.
pub(crate) fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("mqtt5.db")
}

/// Runs `mosquitto_pub` against 127.0.0.1:`port` with `args`; it must succeed.
pub(crate) fn mosquitto_pub(port: &str, args: &[&str]) {
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", port])
            .args(args),
        Duration::from_secs(10),
    );
    assert!(
        status.success(),
        "mosquitto_pub {args:?} failed: {out}{err}"
    );
}
