//! The brokers under test: started as child processes on a free loopback port, each run
//! with a fresh data directory and a generated configuration, and stopped by their PID.
//!
//! - **mqtt5d**: `--listen 127.0.0.1:PORT --data-dir DIR --durability sync --log-level warn`
//!   and a configuration file that raises `max_queued_messages`, so that an offline session
//!   can hold every message of a run.
//! - **Mosquitto**: a configuration with `persistence true` and unlimited queues. Mosquitto
//!   keeps messages in memory and writes its persistence file only every
//!   `autosave_interval` (1800 s by default) and at shutdown: it never fsyncs per message, so
//!   its acknowledgements are not durable the way mqtt5d's are with `--durability sync`.
//!
//! - **rumqttd**: a generated TOML configuration with one MQTT 5 listener, connection and
//!   in-flight limits raised (`max_connections`, `max_inflight_count`, `max_payload_size`,
//!   `max_outgoing_packet_count`) and no delay between accepted connections. It keeps no
//!   state on disk.
//!
//! The throughput scenarios start brokers with [`Profile::Memory`]: mqtt5d with
//! `durability = "memory"`, Mosquitto with `persistence false`, both with their queue and
//! in-flight limits raised. `persist` uses [`Profile::Durable`]. With `cpus` set, the broker is
//! started through `taskset -c CPUS` (which execs it: the PID stays the broker's).
//!
//! A broker can also be one already running at a given address ([`BrokerSpec::External`]);
//! the tool then neither starts nor stops it.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::client::{Client, ConnectOptions};
use crate::error::{Context, Error, Result};

/// How long a broker may take to accept an MQTT connection after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a broker may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The queue limit given to both brokers: no run comes near it.
const QUEUE_LIMIT: u64 = 100_000_000;

/// mqtt5d's queued-bytes limits, per session and in all: 64 GiB, which no run comes near.
const BYTES_LIMIT: u64 = 64 << 30;

/// A broker to run a scenario against.
#[derive(Debug, Clone)]
pub(crate) enum BrokerSpec {
    /// mqtt5d, started from this executable, with `--durability sync`.
    Mqtt5d(PathBuf),
    /// Another mqtt5d executable, started the same way: the build a change is measured
    /// against, in the same run.
    Mqtt5dBaseline(PathBuf),
    /// Mosquitto, started from this executable.
    Mosquitto(PathBuf),
    /// rumqttd, started from this executable.
    Rumqttd(PathBuf),
    /// A broker already listening at this address.
    External(SocketAddr),
}

impl BrokerSpec {
    /// The name in result lines and tables.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Mqtt5d(_) => "mqtt5d".into(),
            Self::Mqtt5dBaseline(_) => "mqtt5d-baseline".into(),
            Self::Mosquitto(_) => "mosquitto".into(),
            Self::Rumqttd(_) => "rumqttd".into(),
            Self::External(addr) => addr.to_string(),
        }
    }

    /// What durability the broker's acknowledgements stand for, in words.
    pub(crate) fn durability(&self) -> &'static str {
        match self {
            Self::Mqtt5d(_) | Self::Mqtt5dBaseline(_) => {
                "sync: PUBACK after the fsync of a group commit"
            }
            Self::Mosquitto(_) => {
                "persistence true: PUBACK from memory, saved every autosave_interval (1800 s) \
                 and at exit, never fsynced per message"
            }
            Self::Rumqttd(_) => "none: rumqttd keeps everything in memory",
            Self::External(_) => "unknown (an external broker)",
        }
    }
}

/// How a broker is configured for a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// Durable acknowledgements where the broker has them (mqtt5d `sync`, Mosquitto
    /// `persistence true`).
    Durable,
    /// In memory (mqtt5d `memory`, Mosquitto `persistence false`), limits raised.
    Memory,
}

/// The in-flight and Receive Maximum limit given to every broker: the most MQTT allows.
const INFLIGHT_LIMIT: u32 = 65_535;

/// The connection limit given to every broker.
const CONNECTION_LIMIT: u32 = 100_000;

/// A broker being benchmarked: a child process of this tool, or an external one.
pub(crate) struct RunningBroker {
    name: String,
    addr: SocketAddr,
    /// The executable and its arguments, to start it again.
    command: Option<(PathBuf, Vec<String>)>,
    child: Option<Child>,
    log: Option<PathBuf>,
    /// The broker's data directory and files, removed when the broker is dropped.
    _dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningBroker")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl RunningBroker {
    /// Starts the broker (in a fresh directory under `data_root`) and waits until it accepts
    /// an MQTT connection.
    ///
    /// # Errors
    /// When the broker cannot be started, exits, or does not answer within 20 s.
    pub(crate) fn start(spec: &BrokerSpec, data_root: &Path) -> Result<Self> {
        Self::start_with(spec, data_root, Profile::Durable, None)
    }

    /// Starts the broker as [`RunningBroker::start`] does, configured for `profile`, and
    /// pinned to `cpus` (a `taskset -c` list) when given.
    ///
    /// # Errors
    /// As [`RunningBroker::start`].
    pub(crate) fn start_with(
        spec: &BrokerSpec,
        data_root: &Path,
        profile: Profile,
        cpus: Option<&str>,
    ) -> Result<Self> {
        let durable = profile == Profile::Durable;
        let (program, args, dir, log) = match spec {
            BrokerSpec::External(addr) => {
                return Ok(Self {
                    name: spec.name(),
                    addr: *addr,
                    command: None,
                    child: None,
                    log: None,
                    _dir: None,
                });
            }
            BrokerSpec::Mqtt5d(program) | BrokerSpec::Mqtt5dBaseline(program) => {
                let (dir, port) = prepare(data_root, "mqtt5d")?;
                let config = dir.path().join("mqtt5d.toml");
                write(&config, &mqtt5d_config(""))?;
                let args = vec![
                    "--config".into(),
                    config.display().to_string(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--data-dir".into(),
                    dir.path().join("data").display().to_string(),
                    "--durability".into(),
                    if durable { "sync" } else { "memory" }.into(),
                    "--log-level".into(),
                    "warn".into(),
                ];
                let log = dir.path().join("mqtt5d.log");
                (program, args, (dir, port), log)
            }
            BrokerSpec::Mosquitto(program) => {
                let (dir, port) = prepare(data_root, "mosquitto")?;
                let data = dir.path().join("data");
                fs::create_dir_all(&data).context(|| format!("creating {}", data.display()))?;
                // Run as root, Mosquitto switches to the `mosquitto` user, which could not
                // write to this directory; `user root` keeps it as it is.
                let user = if rustix::process::geteuid().is_root() {
                    "user root\n"
                } else {
                    ""
                };
                let config = dir.path().join("mosquitto.conf");
                write(
                    &config,
                    &format!(
                        "# Generated by mqtt5-bench.\n\
                         listener {port} 127.0.0.1\n\
                         max_connections -1\n\
                         allow_anonymous true\n\
                         persistence {durable}\n\
                         persistence_location {}/\n\
                         max_queued_messages 0\n\
                         max_queued_bytes 0\n\
                         max_inflight_messages 0\n\
                         max_inflight_bytes 0\n\
                         set_tcp_nodelay true\n\
                         log_dest stderr\n\
                         log_type error\n\
                         log_type warning\n\
                         {user}",
                        data.display()
                    ),
                )?;
                let args = vec!["-c".into(), config.display().to_string()];
                let log = dir.path().join("mosquitto.log");
                (program, args, (dir, port), log)
            }
            BrokerSpec::Rumqttd(program) => {
                let (dir, port) = prepare(data_root, "rumqttd")?;
                let config = dir.path().join("rumqttd.toml");
                write(
                    &config,
                    &format!(
                        "# Generated by mqtt5-bench: limits raised so that none throttles the \
                         load.\n\
                         id = 0\n\
                         [router]\n\
                         id = 0\n\
                         max_connections = {CONNECTION_LIMIT}\n\
                         max_outgoing_packet_count = {INFLIGHT_LIMIT}\n\
                         max_segment_size = 104857600\n\
                         max_segment_count = 10\n\
                         [v5.1]\n\
                         name = \"v5-1\"\n\
                         listen = \"127.0.0.1:{port}\"\n\
                         next_connection_delay_ms = 0\n\
                         [v5.1.connections]\n\
                         connection_timeout_ms = 60000\n\
                         max_payload_size = 1048576\n\
                         max_inflight_count = {INFLIGHT_LIMIT}\n\
                         dynamic_filters = true\n"
                    ),
                )?;
                let args = vec![
                    "--quiet".into(),
                    "--config".into(),
                    config.display().to_string(),
                ];
                let log = dir.path().join("rumqttd.log");
                (program, args, (dir, port), log)
            }
        };
        let (program, args) = match cpus {
            Some(cpus) => {
                let mut wrapped = vec![
                    "-c".to_owned(),
                    cpus.to_owned(),
                    program.display().to_string(),
                ];
                wrapped.extend(args);
                (PathBuf::from("taskset"), wrapped)
            }
            None => (program.clone(), args),
        };
        let (dir, port) = dir;
        let mut broker = Self {
            name: spec.name(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            command: Some((program, args)),
            child: None,
            log: Some(log),
            _dir: Some(dir),
        };
        broker.spawn()?;
        broker.wait_ready()?;
        Ok(broker)
    }

    /// Starts the process, its stderr appended to the log.
    fn spawn(&mut self) -> Result<()> {
        let (Some((program, args)), Some(log)) = (&self.command, &self.log) else {
            return Ok(());
        };
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .context(|| format!("opening {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context(|| format!("starting {}", program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the broker with SIGKILL, as a crash or a power cut would stop it, and starts it
    /// again on the same data directory and port.
    ///
    /// # Errors
    /// When the broker is external, or cannot be killed or restarted.
    pub(crate) fn crash_and_restart(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::Broker(format!(
                "{} was not started by this tool: it cannot be restarted",
                self.name
            )));
        };
        child.kill().context(|| format!("killing {}", self.name))?;
        child
            .wait()
            .context(|| format!("waiting for {}", self.name))?;
        self.spawn()?;
        self.wait_ready()
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The broker's PID, when this tool started it.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Connects and disconnects an MQTT client until one gets a CONNACK.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let options = ConnectOptions {
            client_id: "mqtt5-bench-probe".into(),
            clean_start: true,
            session_expiry: 0,
        };
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Broker(format!(
                    "{} exited at start-up ({status}): {}",
                    self.name,
                    self.log_tail()
                )));
            }
            let attempt =
                Client::connect(self.addr, &options).and_then(|(c, _)| c.disconnect(START_TIMEOUT));
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::Broker(format!(
                        "{} not ready at {} after {START_TIMEOUT:?}: {e}; {}",
                        self.name,
                        self.addr,
                        self.log_tail()
                    )));
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The end of the broker's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let lines = self.log_lines();
        if lines.is_empty() {
            return "its log is empty".into();
        }
        let tail = lines
            .get(lines.len().saturating_sub(5)..)
            .unwrap_or_default();
        format!("its log ends with: {}", tail.join(" | "))
    }

    /// The warnings and errors the broker logged, but Mosquitto's warning about running as
    /// root (the tool configures it for that).
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .and_then(|log| fs::read_to_string(log).ok())
            .map(|text| {
                text.lines()
                    .filter(|l| !l.contains("should not be run as root"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops the broker: SIGTERM to its PID, then SIGKILL if it has not exited within 30 s.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process cannot be waited for.
    pub(crate) fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        stop_child(&mut child)
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = stop_child(&mut child);
        }
    }
}

fn stop_child(child: &mut Child) -> Result<()> {
    if child
        .try_wait()
        .context(|| "waiting for a broker".into())?
        .is_some()
    {
        return Ok(());
    }
    let pid = Pid::from_child(child);
    kill_process(pid, Signal::TERM)
        .map_err(std::io::Error::from)
        .context(|| format!("sending SIGTERM to {pid:?}"))?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if child
            .try_wait()
            .context(|| "waiting for a broker".into())?
            .is_some()
        {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().context(|| format!("killing {pid:?}"))?;
    child.wait().context(|| "waiting for a broker".into())?;
    Ok(())
}

/// mqtt5d's generated configuration: an offline session must be able to hold every message of
/// a run, and no limit may throttle the load; `extra` is appended (tables included).
fn mqtt5d_config(extra: &str) -> String {
    format!(
        "# Generated by mqtt5-bench: an offline session must be able to hold every message of a \
         run, and no limit may throttle the load.\n\
         max_connections = {CONNECTION_LIMIT}\n\
         max_connecting_per_address = {CONNECTION_LIMIT}\n\
         write_buffer_limit = 16777216\n\
         [broker]\n\
         max_queued_messages = {QUEUE_LIMIT}\n\
         max_queued_bytes = {BYTES_LIMIT}\n\
         max_queued_bytes_total = {BYTES_LIMIT}\n\
         receive_maximum = {INFLIGHT_LIMIT}\n\
         max_inflight = {INFLIGHT_LIMIT}\n\
         max_subscriptions_per_client = 100000\n\
         {extra}"
    )
}

impl RunningBroker {
    /// Starts mqtt5d with `durability`, `extra` appended to its generated configuration, and
    /// these users (name, password) added to its database first, with `mqtt5d user add`.
    ///
    /// # Errors
    /// As [`RunningBroker::start`], or when a user cannot be added.
    pub(crate) fn start_mqtt5d_with_users(
        program: &Path,
        data_root: &Path,
        durability: &str,
        extra: &str,
        users: &[(&str, &str)],
    ) -> Result<Self> {
        use std::io::Write as _;
        let (dir, port) = prepare(data_root, "mqtt5d")?;
        let config = dir.path().join("mqtt5d.toml");
        write(&config, &mqtt5d_config(extra))?;
        let data = dir.path().join("data");
        let base = [
            "--config".to_owned(),
            config.display().to_string(),
            "--data-dir".to_owned(),
            data.display().to_string(),
        ];
        for (name, password) in users {
            let mut child = Command::new(program)
                .args(["user", "add", name, "--password-stdin"])
                .args(&base)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context(|| format!("starting {} user add", program.display()))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(format!("{password}\n").as_bytes())
                    .context(|| "writing the password".into())?;
            }
            let out = child
                .wait_with_output()
                .context(|| "waiting for mqtt5d user add".into())?;
            if !out.status.success() {
                return Err(Error::Broker(format!(
                    "mqtt5d user add {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let mut args = base.to_vec();
        args.extend([
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--durability".into(),
            durability.into(),
            "--log-level".into(),
            "warn".into(),
        ]);
        let log = dir.path().join("mqtt5d.log");
        let mut broker = Self {
            name: "mqtt5d".into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            command: Some((program.to_owned(), args)),
            child: None,
            log: Some(log),
            _dir: Some(dir),
        };
        broker.spawn()?;
        broker.wait_ready()?;
        Ok(broker)
    }
}

/// A fresh directory for one broker run, and a free loopback port.
fn prepare(data_root: &Path, name: &str) -> Result<(tempfile::TempDir, u16)> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mqtt5-bench-{name}-"))
        .tempdir_in(data_root)
        .context(|| format!("creating a directory in {}", data_root.display()))?;
    Ok((dir, free_port()?))
}

/// A loopback port nothing listens on: bound, read, and released for the broker to take.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context(|| "binding 127.0.0.1:0 to find a free port".into())?;
    Ok(listener
        .local_addr()
        .context(|| "reading a local address".into())?
        .port())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).context(|| format!("writing {}", path.display()))
}

/// The resident set size of a process in KiB (`VmRSS` of `/proc/PID/status`); Linux only.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) used so far by a process, from `/proc/PID/stat`; Linux only.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    parse_stat_cpu(&fs::read_to_string(path).ok()?)
}

/// utime + stime of a `/proc/…/stat` line.
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_nanos(
        (utime + stime).saturating_mul(1_000_000_000) / ticks,
    ))
}

/// CPU time (user + system) used so far by each thread of a process, by thread id, with the
/// thread's name; from `/proc/PID/task/*/stat`, Linux only.
pub(crate) fn thread_cpu_times(pid: u32) -> std::collections::BTreeMap<u32, (String, Duration)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = stat
            .find('(')
            .zip(stat.rfind(')'))
            .and_then(|(a, b)| stat.get(a + 1..b))
            .unwrap_or("?")
            .to_owned();
        if let Some(cpu) = parse_stat_cpu(&stat) {
            out.insert(tid, (name, cpu));
        }
    }
    out
}
