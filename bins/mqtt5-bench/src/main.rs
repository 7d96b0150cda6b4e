//! `mqtt5-bench`: a load generator for MQTT brokers, built on `mqtt5-codec`.
//!
//! ```text
//! mqtt5-bench persist [OPTIONS]     durable QoS 1 to an offline session, mqtt5d vs Mosquitto
//! mqtt5-bench netfuzz [OPTIONS]     mutated valid sessions against a live mqtt5d (see netfuzz)
//! ```
//!
//! The tool starts each broker itself (a fresh process and data directory for every run, on a
//! free loopback port, stopped by its PID afterwards), or measures one already running
//! (`--target ADDR`). Every run prints a `result ...` line on stdout as it finishes; at the
//! end come Markdown tables. Progress goes to stderr. The exit status is 1 when a run failed
//! its verification.
//!
//! Scenarios live in [`scenario`]; the clients they use in [`client`] (one blocking control
//! connection) and [`driver`] (many load connections per thread on `mio`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::broker::{BrokerSpec, RunningBroker};
use crate::scenario::persist::{self, PersistOptions, PersistResult};

mod broker;
mod client;
mod driver;
mod error;
mod netfuzz;
mod report;
mod scenario;

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
    /// The Mosquitto executable
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
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
    /// Mosquitto with persistence on.
    Mosquitto,
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
            BrokerName::Mosquitto => BrokerSpec::Mosquitto(args.mosquitto.clone()),
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
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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
            let target = if matches!(spec, BrokerSpec::Mqtt5d(_)) {
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
