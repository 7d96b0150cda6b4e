//! `mqtt5-bench`: a load generator for MQTT brokers, built on `mqtt5-codec`.
//!
//! ```text
//! mqtt5-bench persist [OPTIONS]     durable QoS 1 to an offline session, mqtt5d vs Mosquitto
//! mqtt5-bench fan-in [OPTIONS]      P publishers -> 1 subscriber, QoS 0/1/2, 64 B and 1 KiB
//! mqtt5-bench fan-out [OPTIONS]     1 publisher -> 100 subscribers of one topic
//! mqtt5-bench topics [OPTIONS]      4 publishers over 4,096 topics -> 64 subscribers, many filters
//! mqtt5-bench latency [OPTIONS]     1 publisher paced at 1,000 msg/s: p50, p99, p99.9
//! mqtt5-bench conns [OPTIONS]       C idle connections: connect rate, broker RSS per connection
//! mqtt5-bench auth-storm [OPTIONS]  an unrelated pair's latency during a storm of failed logins
//! mqtt5-bench storm [OPTIONS]       an unrelated pair's latency during a storm of durable fan-out
//! mqtt5-bench summarize FILE...     a Markdown table of medians from `result` lines
//! mqtt5-bench netfuzz [OPTIONS]     mutated valid sessions against a live mqtt5d (see netfuzz)
//! ```
//!
//! The brokers are mqtt5d, Mosquitto and rumqttd (`--brokers`); `--broker-cpus` pins the
//! broker with `taskset`.
//!
//! The tool starts each broker itself (a fresh process and data directory for every run, on a
//! free loopback port, stopped by its PID afterwards), or measures one already running
//! (`--target ADDR`). Every run prints a `result ...` line on stdout as it finishes; at the
//! end come Markdown tables. Progress goes to stderr. The exit status is 1 when a run failed
//! its verification.
//!
//! Scenarios live in [`scenario`]; the clients they use in [`client`] (one blocking control
//! connection), [`driver`] (many load connections per thread on `mio`) and [`flow`] (closed-loop
//! publishers and subscribers on one `mio` poll).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use mqtt5_codec::QoS;

use crate::broker::{BrokerSpec, Profile, RunningBroker};
use crate::report::ResultLine;
use crate::scenario::auth_storm;
use crate::scenario::conns::{self, ConnsResult};
use crate::scenario::flows::{self, Case, FlowOptions, FlowResult, Kind};
use crate::scenario::persist::{self, PersistOptions, PersistResult};
use crate::scenario::storm::{self, StormOptions, StormResult};

mod broker;
mod client;
mod driver;
mod error;
mod flow;
mod netfuzz;
mod report;
mod scenario;
mod summary;

/// A load generator for MQTT brokers.
#[derive(Debug, Parser)]
#[command(name = "mqtt5-bench", version)]
struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// QoS 1 publishers, one message in flight each, to an offline persistent session; then
    /// the session is drained and every acknowledged message must be in it
    Persist(PersistArgs),
    /// P publishers, each on its own topic, to one subscriber; closed-loop
    FanIn(FanInArgs),
    /// One publisher to many subscribers of one topic; closed-loop
    FanOut(FanOutArgs),
    /// Publishers cycling over 4,096 topics to 64 subscribers with exact, + and # filters
    Topics(TopicsArgs),
    /// One publisher paced at a fixed rate to one subscriber: latency percentiles
    Latency(LatencyArgs),
    /// Many idle connections: the connect rate and the broker's memory per connection
    Conns(ConnsArgs),
    /// An unrelated pair's latency (QoS 0, 1,000 msg/s) alone and during a storm of
    /// wrong-password logins, in the same run (mqtt5d only)
    AuthStorm(AuthStormArgs),
    /// An unrelated pair's latency (QoS 0, 500 msg/s) alone and during a storm of durable
    /// fan-out (QoS 1 publishers flat out to thousands of offline persistent sessions, sync
    /// durability), in the same run; the storm's own rate and PUBACK latency; no QoS 1 loss
    Storm(StormArgs),
    /// Reads `result` lines (files, or stdin with none) and prints a Markdown table of medians
    /// with a ratio column mqtt5d/peer
    Summarize(SummarizeArgs),
    /// A generator process of `conns` (started by it)
    #[command(hide = true)]
    ConnsWorker(ConnsWorkerArgs),
    /// Mutated valid sessions sent to a live mqtt5d over loopback for a bounded time, with a
    /// health check after every batch
    Netfuzz(NetfuzzArgs),
}

#[derive(Debug, Args)]
struct NetfuzzArgs {
    /// The mqtt5d executable [default: mqtt5d beside this executable]
    #[arg(long, value_name = "PATH")]
    mqtt5d: Option<PathBuf>,
    /// Fuzz a broker already listening at this address instead of starting one
    #[arg(long, value_name = "ADDR:PORT")]
    target: Option<SocketAddr>,
    /// How long to run, in minutes
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// The seed of the generator [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// Connections at once
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Sessions between two health checks
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Where the inputs of a batch that crashed or hung the broker are saved
    #[arg(long, value_name = "DIR", default_value = "netfuzz-failures")]
    out: PathBuf,
    /// Send the saved streams (*.bin) of this directory instead of generating sessions; with
    /// --connections 1, one at a time with a health check after each
    #[arg(long, value_name = "DIR")]
    replay: Option<PathBuf>,
    /// The log level of the mqtt5d it starts
    #[arg(long, default_value = "warn")]
    log_level: String,
}

/// Which brokers to run against, and how.
#[derive(Debug, Args)]
struct BrokerArgs {
    /// Brokers to start, comma-separated
    #[arg(
        long = "brokers",
        value_delimiter = ',',
        default_value = "mqtt5d,mosquitto"
    )]
    brokers: Vec<BrokerName>,
    /// The mqtt5d executable [default: mqtt5d beside this executable]
    #[arg(long, value_name = "PATH")]
    mqtt5d: Option<PathBuf>,
    /// The mqtt5d executable of `mqtt5d-baseline`: another build, measured in the same run
    #[arg(
        long,
        value_name = "PATH",
        required_if_eq("brokers", "mqtt5d-baseline")
    )]
    mqtt5d_baseline: Option<PathBuf>,
    /// The Mosquitto executable
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// The rumqttd executable
    #[arg(long, value_name = "PATH", default_value = "rumqttd")]
    rumqttd: PathBuf,
    /// Pin each broker it starts to these CPUs (`taskset -c` syntax)
    #[arg(long, value_name = "LIST")]
    broker_cpus: Option<String>,
    /// Measure a broker already listening at this address instead of starting any
    /// (repeatable)
    #[arg(long, value_name = "ADDR:PORT")]
    target: Vec<SocketAddr>,
    /// Where the brokers' data directories go (a real disk, for fsyncs to mean anything)
    /// [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Repeat every run this many times (the order of the brokers alternates)
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BrokerName {
    /// mqtt5d with --durability sync.
    Mqtt5d,
    /// Another mqtt5d build (`--mqtt5d-baseline`), configured as mqtt5d.
    Mqtt5dBaseline,
    /// Mosquitto with persistence on.
    Mosquitto,
    /// rumqttd (no persistence).
    Rumqttd,
}

/// What every flow scenario takes.
#[derive(Debug, Args)]
struct FlowArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The measured window, in seconds
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Publishing before the window, in seconds
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The longest wait for the last messages after the window, in seconds
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Messages a publisher may have incomplete at once (not yet received by every matching
    /// subscriber, and at QoS 1 and 2 not yet acknowledged)
    #[arg(long, default_value_t = 64)]
    window: usize,
}

#[derive(Debug, Args)]
struct FanInArgs {
    #[command(flatten)]
    flow: FlowArgs,
    /// Publishers
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// QoS levels to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    qos: Vec<u8>,
    /// Payload sizes to run, bytes, comma-separated (at least 20)
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    payload: Vec<usize>,
}

#[derive(Debug, Args)]
struct FanOutArgs {
    #[command(flatten)]
    flow: FlowArgs,
    /// Subscribers
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// QoS levels to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    qos: Vec<u8>,
    /// Payload bytes (at least 20)
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

#[derive(Debug, Args)]
struct TopicsArgs {
    #[command(flatten)]
    flow: FlowArgs,
    /// Publishers, each cycling over all the topics from its own offset
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Subscribers
    #[arg(long, default_value_t = 64)]
    subscribers: usize,
    /// QoS levels to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1")]
    qos: Vec<u8>,
    /// Payload bytes (at least 20)
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    #[command(flatten)]
    flow: FlowArgs,
    /// Messages per second
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// QoS levels to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    qos: Vec<u8>,
    /// Payload bytes (at least 20)
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

#[derive(Debug, Args)]
struct ConnsArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Connections
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// The longest connecting may take, in seconds; a broker slower than that fails the run
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
}

#[derive(Debug, Args)]
struct AuthStormArgs {
    /// The mqtt5d executable [default: mqtt5d beside this executable]
    #[arg(long, value_name = "PATH")]
    mqtt5d: Option<PathBuf>,
    /// Concurrent wrong-password clients
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// The broker's `failed_login_delay_max_ms` values to run, comma-separated (0: no delay,
    /// every failed login costs a password check at the clients' full rate; `unset`: the key
    /// is left out, for a broker that does not know it)
    #[arg(long, value_delimiter = ',', default_value = "5000,0")]
    login_delay_ms: Vec<String>,
    /// The measured window of each phase, in seconds
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Publishing before each window, in seconds
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Repeat every run this many times
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Where the broker's data directory goes [default: the system temporary directory]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StormArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Offline persistent sessions subscribed at QoS 1 to the storm's topics
    #[arg(long, default_value_t = 5000)]
    sessions: usize,
    /// Storm publishers
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Messages each storm publisher keeps unacknowledged
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Payload bytes of a storm message (at least 12)
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// The unrelated pair's rate, QoS 0 messages per second
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// The pair's measured window, in seconds (alone, then during the storm)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The pair's warm-up before each window, in seconds
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// From the start of the storm to the pair's second measurement, in seconds
    #[arg(long, default_value_t = 3.0)]
    ramp: f64,
    /// The longest the storm's publishers wait for their last PUBACKs, in seconds
    #[arg(long, default_value_t = 120.0)]
    drain: f64,
    /// Sessions drained after the storm to check that every acknowledged message is in them
    #[arg(long, default_value_t = 2)]
    verify: usize,
}

#[derive(Debug, Args)]
struct ConnsWorkerArgs {
    /// The broker
    #[arg(long)]
    addr: SocketAddr,
    /// Connections to open
    #[arg(long)]
    count: usize,
    /// The source address
    #[arg(long)]
    source: std::net::Ipv4Addr,
    /// The longest connecting may take, in seconds
    #[arg(long)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct SummarizeArgs {
    /// Files of `result` lines [default: stdin]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct PersistArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Publisher counts to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    publishers: Vec<usize>,
    /// The measured window, in seconds
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Publishing before the window, in seconds
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Payload bytes per message (at least 12: publisher and sequence number)
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Threads driving the publishers
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The longest the subscriber may take to drain its queue, in seconds
    #[arg(long, default_value_t = 300.0)]
    drain_timeout: f64,
    /// Kill each broker (SIGKILL) after the publishers and restart it on the same data before
    /// the drain: acknowledged messages must survive a crash
    #[arg(long)]
    crash_before_drain: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Persist(args) => run_persist(&args),
        Command::FanIn(args) => {
            let cases = cross(&args.qos, &args.payload, |qos, payload| Case {
                kind: Kind::FanIn,
                qos,
                payload,
                publishers: args.publishers,
                subscribers: 1,
            });
            run_flows(&args.flow, &cases)
        }
        Command::FanOut(args) => {
            let cases = cross(&args.qos, &[args.payload], |qos, payload| Case {
                kind: Kind::FanOut,
                qos,
                payload,
                publishers: 1,
                subscribers: args.subscribers,
            });
            run_flows(&args.flow, &cases)
        }
        Command::Topics(args) => {
            let cases = cross(&args.qos, &[args.payload], |qos, payload| Case {
                kind: Kind::Topics,
                qos,
                payload,
                publishers: args.publishers,
                subscribers: args.subscribers,
            });
            run_flows(&args.flow, &cases)
        }
        Command::Latency(args) => {
            let cases = cross(&args.qos, &[args.payload], |qos, payload| Case {
                kind: Kind::Latency,
                qos,
                payload,
                publishers: 1,
                subscribers: 1,
            });
            run_flows_at(&args.flow, &cases, args.rate)
        }
        Command::Conns(args) => run_conns(&args),
        Command::AuthStorm(args) => run_auth_storm(&args),
        Command::Storm(args) => run_storm(&args),
        Command::Summarize(args) => summary::run(&args.files),
        Command::ConnsWorker(args) => match conns::worker(
            args.addr,
            args.count,
            args.source,
            Duration::from_secs_f64(args.timeout),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Netfuzz(args) => netfuzz::run(&netfuzz::Options {
            mqtt5d: args.mqtt5d.unwrap_or_else(beside_this_executable),
            target: args.target,
            duration: Duration::from_secs_f64(args.minutes * 60.0),
            seed: args.seed,
            connections: args.connections,
            batch: args.batch,
            out: args.out,
            replay: args.replay,
            log_level: args.log_level,
        }),
    }
}

/// The brokers to run against, in their first order.
fn specs(args: &BrokerArgs) -> Vec<BrokerSpec> {
    if !args.target.is_empty() {
        return args
            .target
            .iter()
            .copied()
            .map(BrokerSpec::External)
            .collect();
    }
    let mqtt5d = args.mqtt5d.clone().unwrap_or_else(beside_this_executable);
    args.brokers
        .iter()
        .map(|b| match b {
            BrokerName::Mqtt5d => BrokerSpec::Mqtt5d(mqtt5d.clone()),
            BrokerName::Mqtt5dBaseline => BrokerSpec::Mqtt5dBaseline(
                args.mqtt5d_baseline
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("mqtt5d")),
            ),
            BrokerName::Mosquitto => BrokerSpec::Mosquitto(args.mosquitto.clone()),
            BrokerName::Rumqttd => BrokerSpec::Rumqttd(args.rumqttd.clone()),
        })
        .collect()
}

/// `mqtt5d` in this executable's directory, else on the `PATH`.
fn beside_this_executable() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("mqtt5d")))
        .unwrap_or_else(|| PathBuf::from("mqtt5d"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let parts: Vec<&str> = s.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

/// Every QoS and payload combination.
fn cross(qos: &[u8], payloads: &[usize], case: impl Fn(QoS, usize) -> Case) -> Vec<Case> {
    let mut cases = Vec::new();
    for &q in qos {
        let Some(q) = QoS::from_u8(q) else {
            eprintln!("ignoring QoS {q}");
            continue;
        };
        for &p in payloads {
            cases.push(case(q, p));
        }
    }
    cases
}

fn run_flows(args: &FlowArgs, cases: &[Case]) -> ExitCode {
    run_flows_at(args, cases, 1000.0)
}

/// Raises this process's soft limit of open files to the hard limit; the brokers it starts
/// inherit it.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Runs `once` for every round, case and broker, alternating the order of the brokers; prints
/// each result line as it comes. Returns the results and whether any run failed.
fn run_matrix<C, R>(
    brokers: &BrokerArgs,
    cases: &[C],
    describe: impl Fn(&C) -> String,
    mut once: impl FnMut(&RunningBroker, &C, &str) -> error::Result<R>,
    line: impl Fn(&R) -> (ResultLine, bool),
    failed_line: impl Fn(&str, &C, &str) -> ResultLine,
) -> (Vec<R>, bool) {
    raise_file_limit();
    let specs = specs(brokers);
    let data_root = brokers.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let pin = brokers.broker_cpus.clone().unwrap_or_else(|| "none".into());
    let mut results = Vec::new();
    let mut failed = false;
    let mut turn = 0;
    for round in 0..brokers.rounds.max(1) {
        for case in cases {
            let mut order = specs.clone();
            if turn % 2 == 1 {
                order.reverse();
            }
            turn += 1;
            for spec in &order {
                eprintln!(
                    "== round {}, {}, {}",
                    round + 1,
                    spec.name(),
                    describe(case)
                );
                let run = RunningBroker::start_with(
                    spec,
                    &data_root,
                    Profile::Memory,
                    brokers.broker_cpus.as_deref(),
                )
                .and_then(|broker| {
                    let result = once(&broker, case, &pin);
                    let logged = broker.log_lines().len();
                    if logged > 0 {
                        eprintln!(
                            "   {} logged {logged} warning/error lines; {}",
                            broker.name(),
                            broker.log_tail()
                        );
                    }
                    broker.stop()?;
                    result
                });
                match run {
                    Ok(result) => {
                        let (line, ok) = line(&result);
                        println!("{line}");
                        if !ok {
                            eprintln!("   run FAILED its verification: {line}");
                        }
                        failed |= !ok;
                        results.push(result);
                    }
                    Err(e) => {
                        eprintln!("   run failed: {e}");
                        println!(
                            "{}",
                            failed_line(&spec.name(), case, &pin).field("error", e)
                        );
                        failed = true;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    (results, failed)
}

fn run_flows_at(args: &FlowArgs, cases: &[Case], latency_rate: f64) -> ExitCode {
    if let Some(c) = cases.iter().find(|c| c.payload < flow::MIN_PAYLOAD) {
        eprintln!(
            "payloads must be at least {} bytes, not {}",
            flow::MIN_PAYLOAD,
            c.payload
        );
        return ExitCode::FAILURE;
    }
    let options = FlowOptions {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_secs_f64(args.drain),
        window: args.window.max(1),
        latency_rate,
    };
    let (results, failed) = run_matrix(
        &args.brokers,
        cases,
        |c| format!("{} {c}", c.kind.name()),
        |broker, case, pin| flows::run(broker, case, &options, pin),
        |r: &FlowResult| {
            for p in &r.outcome.problems {
                eprintln!("   problem: {p}");
            }
            (r.line(), r.verified())
        },
        |broker, case, pin| {
            ResultLine::new(case.kind.name())
                .field("broker", broker)
                .field("case", case)
                .field("pin", pin)
                .field("verified", "FAILED")
        },
    );
    println!();
    println!(
        "## closed-loop flows: window {} messages per publisher, {} s warm-up + {} s measured",
        options.window, args.warmup, args.duration
    );
    println!();
    println!("Load average after: {}.", load_average());
    println!();
    let mut table = FlowResult::table();
    let names = broker_names(results.iter().map(|r| &r.broker));
    for case in cases {
        for name in &names {
            let runs: Vec<&FlowResult> = results
                .iter()
                .filter(|r| {
                    r.broker == *name
                        && r.case.to_string() == case.to_string()
                        && r.case.kind == case.kind
                })
                .collect();
            if !runs.is_empty() {
                table.row(FlowResult::summary_row(&runs));
            }
        }
    }
    print!("{table}");
    exit_code(failed)
}

fn run_conns(args: &ConnsArgs) -> ExitCode {
    let (results, failed) = run_matrix(
        &args.brokers,
        &[args.connections],
        |c| format!("conns {c}"),
        |broker, &c, pin| {
            conns::run(
                broker,
                c,
                Duration::from_secs_f64(args.connect_timeout),
                pin,
            )
        },
        |r: &ConnsResult| {
            for p in &r.problems {
                eprintln!("   problem: {p}");
            }
            (r.line(), r.verified())
        },
        |broker, c, pin| {
            ResultLine::new("conns")
                .field("broker", broker)
                .field("case", format!("{c}c"))
                .field("pin", pin)
                .field("verified", "FAILED")
        },
    );
    println!();
    println!(
        "## conns: {} idle connections, keep-alive 60, at most {} per generator process",
        args.connections,
        conns::PER_WORKER
    );
    println!();
    let mut table = ConnsResult::table();
    for name in broker_names(results.iter().map(|r| &r.broker)) {
        let runs: Vec<&ConnsResult> = results.iter().filter(|r| r.broker == name).collect();
        table.row(ConnsResult::summary_row(&runs));
    }
    print!("{table}");
    exit_code(failed)
}

fn run_auth_storm(args: &AuthStormArgs) -> ExitCode {
    raise_file_limit();
    let mqtt5d = args.mqtt5d.clone().unwrap_or_else(beside_this_executable);
    let data_root = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let flow = FlowOptions {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_secs(10),
        window: 64,
        latency_rate: 1000.0,
    };
    let mut results = Vec::new();
    let mut failed = false;
    for round in 0..args.rounds.max(1) {
        for delay in &args.login_delay_ms {
            let login_delay_ms = match delay.as_str() {
                "unset" => None,
                ms => match ms.parse::<u64>() {
                    Ok(ms) => Some(ms),
                    Err(_) => {
                        eprintln!("--login-delay-ms takes numbers or `unset`, not {ms:?}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            eprintln!(
                "== round {}, auth-storm, {} clients, login delay {delay} ms",
                round + 1,
                args.clients
            );
            let options = auth_storm::StormOptions {
                clients: args.clients,
                flow: flow.clone(),
                login_delay_ms,
            };
            match auth_storm::run(&mqtt5d, &data_root, &options) {
                Ok(result) => {
                    println!("{}", result.line());
                    failed |= !result.pair_ok;
                    results.push(result);
                }
                Err(e) => {
                    eprintln!("   run failed: {e}");
                    println!(
                        "{}",
                        ResultLine::new("auth-storm")
                            .field("login_delay_ms", delay)
                            .field("verified", "FAILED")
                            .field("error", e)
                    );
                    failed = true;
                }
            }
        }
    }
    println!();
    println!(
        "## auth-storm: QoS 0 pair at 1,000 msg/s, {} s measured alone then during the storm",
        args.duration
    );
    println!();
    println!("Load average after: {}.", load_average());
    println!();
    let mut table = auth_storm::StormResult::table();
    for r in &results {
        table.row(r.row(flow.duration));
    }
    print!("{table}");
    exit_code(failed)
}

fn run_storm(args: &StormArgs) -> ExitCode {
    raise_file_limit();
    if args.payload < 12 {
        eprintln!("--payload must be at least 12");
        return ExitCode::FAILURE;
    }
    let specs = specs(&args.brokers);
    let data_root = args
        .brokers
        .data_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let options = StormOptions {
        sessions: args.sessions,
        publishers: args.publishers,
        window: args.window,
        payload: args.payload,
        ramp: Duration::from_secs_f64(args.ramp),
        flow: FlowOptions {
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            drain: Duration::from_secs(10),
            window: 64,
            latency_rate: args.rate,
        },
        drain: Duration::from_secs_f64(args.drain),
        verify: args.verify,
    };
    let load_before = load_average();
    let mut results: Vec<StormResult> = Vec::new();
    let mut failed = false;
    for round in 0..args.brokers.rounds.max(1) {
        let mut order = specs.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for spec in &order {
            eprintln!(
                "== round {}, {}, storm of {} publishers over {} sessions",
                round + 1,
                spec.name(),
                args.publishers,
                args.sessions
            );
            let run = RunningBroker::start_with(
                spec,
                &data_root,
                Profile::Durable,
                args.brokers.broker_cpus.as_deref(),
            )
            .and_then(|broker| {
                let result = storm::run(&broker, &options);
                broker.stop()?;
                result
            });
            match run {
                Ok(result) => {
                    println!("{}", result.line());
                    for problem in &result.problems {
                        eprintln!("   problem: {problem}");
                    }
                    if let Err(e) = &result.during {
                        eprintln!("   the pair did not complete during the storm: {e}");
                    }
                    failed |= !result.verified();
                    results.push(result);
                }
                Err(e) => {
                    eprintln!("   run failed: {e}");
                    println!(
                        "{}",
                        ResultLine::new("storm")
                            .field("broker", spec.name())
                            .field("verified", "FAILED")
                            .field("error", e)
                    );
                    failed = true;
                }
            }
        }
    }
    println!();
    println!(
        "## storm: {} QoS 1 publishers flat out ({} unacknowledged each, {} B) to {} offline \
         persistent sessions on `storm/#`, sync durability; a QoS 0 pair at {} msg/s, {} s \
         measured alone then during the storm",
        args.publishers, args.window, args.payload, args.sessions, args.rate, args.duration
    );
    println!();
    println!(
        "Load average {load_before} before, {} after. Target: the pair's p99 in the storm \
         within 2× of its p99 alone.",
        load_average()
    );
    println!();
    let mut table = StormResult::table();
    for r in &results {
        table.row(r.row());
    }
    print!("{table}");
    exit_code(failed)
}

fn run_persist(args: &PersistArgs) -> ExitCode {
    let specs = specs(&args.brokers);
    let data_root = args
        .brokers
        .data_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let options = |publishers| PersistOptions {
        publishers,
        threads: args.threads,
        payload: args.payload,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        crash_before_drain: args.crash_before_drain,
    };
    if args.payload < driver::MIN_PAYLOAD {
        eprintln!("--payload must be at least {}", driver::MIN_PAYLOAD);
        return ExitCode::FAILURE;
    }
    let load_before = load_average();

    let mut results: Vec<PersistResult> = Vec::new();
    let mut failed = false;
    let mut turn = 0;
    for round in 0..args.brokers.rounds.max(1) {
        for &publishers in &args.publishers {
            let mut order = specs.clone();
            if turn % 2 == 1 {
                order.reverse();
            }
            turn += 1;
            for spec in &order {
                eprintln!(
                    "== round {}, {}, {publishers} publishers",
                    round + 1,
                    spec.name()
                );
                match persist_once(spec, &data_root, &options(publishers)) {
                    Ok(result) => {
                        println!("{}", result.line());
                        for problem in &result.problems {
                            eprintln!("   problem: {problem}");
                        }
                        failed |= !result.verified();
                        results.push(result);
                    }
                    Err(e) => {
                        eprintln!("   run failed: {e}");
                        println!(
                            "{}",
                            report::ResultLine::new("persist")
                                .field("broker", spec.name())
                                .field("publishers", publishers)
                                .field("verified", "FAILED")
                                .field("error", e)
                        );
                        failed = true;
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    print_persist_report(args, &specs, &results, &load_before);
    exit_code(failed)
}

/// Starts the broker, runs the scenario once, stops the broker.
fn persist_once(
    spec: &BrokerSpec,
    data_root: &std::path::Path,
    options: &PersistOptions,
) -> error::Result<PersistResult> {
    let mut broker = RunningBroker::start(spec, data_root)?;
    let result = persist::run(&mut broker, options);
    let logged = broker.log_lines().len();
    if logged > 0 {
        eprintln!(
            "   {} logged {logged} warning/error lines; {}",
            broker.name(),
            broker.log_tail()
        );
    }
    broker.stop()?;
    result
}

fn print_persist_report(
    args: &PersistArgs,
    specs: &[BrokerSpec],
    results: &[PersistResult],
    load_before: &str,
) {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!(
        "## persist: QoS 1, {} B payload, 1 message in flight per publisher, \
         {} s warm-up + {} s measured; offline persistent subscriber to `bench/#`",
        args.payload, args.warmup, args.duration
    );
    println!();
    println!(
        "Machine: {cores} cores; load average {load_before} before, {} after. \
         Publisher threads: {}.",
        load_average(),
        args.threads
    );
    for spec in specs {
        println!("- {}: {}", spec.name(), spec.durability());
    }
    if args.crash_before_drain {
        println!(
            "- Each broker was killed with SIGKILL after the publishers and restarted before \
             the drain."
        );
    }
    println!();
    let mut table = PersistResult::table();
    for &publishers in &args.publishers {
        for spec in specs {
            let name = spec.name();
            let runs: Vec<&PersistResult> = results
                .iter()
                .filter(|r| r.broker == name && r.publishers == publishers)
                .collect();
            if !runs.is_empty() {
                table.row(PersistResult::summary_row(&runs));
            }
        }
    }
    let mut details = PersistResult::details_table();
    for (i, r) in results.iter().enumerate() {
        details.row(r.details_row(i + 1));
    }
    if args.brokers.rounds > 1 {
        println!(
            "Medians of {} runs each; msgs/s gives the range.",
            args.brokers.rounds
        );
        println!();
    }
    print!("{table}");
    println!();
    println!("Every run, in the order they ran:");
    println!();
    print!("{details}");
    println!();

    // The scaling from the fewest to the most publishers, per broker (medians over rounds).
    let (Some(&low), Some(&high)) = (args.publishers.iter().min(), args.publishers.iter().max())
    else {
        return;
    };
    if low == high {
        return;
    }
    for spec in specs {
        let name = spec.name();
        let median = |p: usize| {
            let mut rates: Vec<f64> = results
                .iter()
                .filter(|r| r.broker == name && r.publishers == p)
                .map(PersistResult::rate)
                .collect();
            rates.sort_by(f64::total_cmp);
            rates.get(rates.len() / 2).copied()
        };
        if let (Some(a), Some(b)) = (median(low), median(high))
            && a > 0.0
        {
            let target = if matches!(spec, BrokerSpec::Mqtt5d(_) | BrokerSpec::Mqtt5dBaseline(_)) {
                " (target: at least 20× from group commit)"
            } else {
                ""
            };
            println!(
                "{name}: {high} publishers / {low} publisher{} = {:.1}×{target}",
                if low == 1 { "" } else { "s" },
                b / a
            );
        }
    }
}

/// The broker names of `results`, each once, in the order they first ran.
fn broker_names<'a>(results: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in results {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The exit status: 1 when a run failed its verification.
fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
