//! `summarize`: `result` lines in, one Markdown table of medians out, with a column per broker
//! and a ratio column mqtt5d/peer for every other broker.
//!
//! The rows are (scenario, case, metric, pinning), in the order they first appear. The metrics
//! of each scenario are fixed: throughput (higher is better) or latency and memory (lower is
//! better, marked "↓"). A cell is the median over the runs of that broker; a run that failed
//! its verification marks the cell with "✗", and QoS 0 loss is noted as "lost N".

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::report::Table;
use crate::scenario::flows::median;

/// The metrics of a scenario: (field, name in the table, lower is better).
fn metrics(scenario: &str) -> &'static [(&'static str, &'static str, bool)] {
    match scenario {
        "fan-in" | "persist" => &[("msgs_per_s", "msgs/s", false)],
        "fan-out" => &[("deliveries_per_s", "deliveries/s", false)],
        "topics" => &[
            ("msgs_per_s", "msgs/s in", false),
            ("deliveries_per_s", "deliveries/s", false),
        ],
        "latency" => &[
            ("p50_us", "p50 µs ↓", true),
            ("p99_us", "p99 µs ↓", true),
            ("p999_us", "p99.9 µs ↓", true),
        ],
        "conns" => &[
            ("connects_per_s", "connects/s", false),
            ("kib_per_conn", "RSS KiB/conn ↓", true),
        ],
        _ => &[],
    }
}

/// The runs of one broker in one row.
#[derive(Default)]
struct Cell {
    values: Vec<f64>,
    failed: usize,
    lost: u64,
}

/// Reads the files (or stdin) and prints the table.
pub(crate) fn run(files: &[PathBuf]) -> ExitCode {
    let mut text = String::new();
    if files.is_empty()
        && let Err(e) = std::io::stdin().read_to_string(&mut text)
    {
        eprintln!("reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(t) => text.push_str(&t),
            Err(e) => {
                eprintln!("reading {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{}", summarize(&text));
    ExitCode::SUCCESS
}

/// The table for these lines.
fn summarize(text: &str) -> Table {
    let mut rows: Vec<(String, String, &'static str, bool, String)> = Vec::new();
    let mut cells: BTreeMap<(usize, String), Cell> = BTreeMap::new();
    let mut brokers: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("result ") else {
            continue;
        };
        let fields: BTreeMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let get = |k: &str| fields.get(k).copied().unwrap_or("");
        let scenario = get("scenario");
        let broker = get("broker").to_owned();
        if !brokers.contains(&broker) {
            brokers.push(broker.clone());
        }
        let ok = get("verified") == "ok";
        let lost: u64 = if get("case").starts_with("qos0") {
            get("missing").parse().unwrap_or(0)
        } else {
            0
        };
        let case = if scenario == "persist" {
            format!("{}p", get("publishers"))
        } else {
            get("case").to_owned()
        };
        let pin = get("pin").to_owned();
        for &(key, name, lower) in metrics(scenario) {
            let row = (scenario.to_owned(), case.clone(), name, lower, pin.clone());
            let index = rows.iter().position(|r| *r == row).unwrap_or_else(|| {
                rows.push(row);
                rows.len() - 1
            });
            let cell = cells.entry((index, broker.clone())).or_default();
            match get(key).parse::<f64>() {
                Ok(v) if ok => cell.values.push(v),
                _ => cell.failed += 1,
            }
            if !ok {
                cell.failed = cell.failed.max(1);
            }
            cell.lost += lost;
        }
    }
    // mqtt5d first, then the peers in the order they appear.
    brokers.sort_by_key(|b| b != "mqtt5d");
    let peers: Vec<&String> = brokers.iter().filter(|b| *b != "mqtt5d").collect();
    let mut columns: Vec<(String, bool)> = vec![
        ("scenario".into(), false),
        ("case".into(), false),
        ("metric".into(), false),
        ("broker pinned".into(), false),
    ];
    columns.extend(brokers.iter().map(|b| (b.clone(), true)));
    columns.extend(peers.iter().map(|p| (format!("mqtt5d/{p}"), true)));
    let names: Vec<(&str, bool)> = columns.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    let mut table = Table::new(&names);
    for (index, (scenario, case, metric, _lower, pin)) in rows.iter().enumerate() {
        let value = |b: &str| {
            cells
                .get(&(index, b.to_owned()))
                .filter(|c| !c.values.is_empty())
                .map(|c| median(c.values.clone()))
        };
        let mut row = vec![
            scenario.clone(),
            case.clone(),
            (*metric).to_owned(),
            if pin == "none" {
                "no".into()
            } else {
                format!("cpu {pin}")
            },
        ];
        for b in &brokers {
            let cell = cells.get(&(index, b.clone()));
            let mut text = value(b).map_or_else(|| "—".into(), format_value);
            if let Some(c) = cell {
                if c.failed > 0 {
                    text.push_str(" ✗");
                }
                if c.lost > 0 {
                    text.push_str(&format!(" (lost {})", c.lost));
                }
            }
            row.push(text);
        }
        for p in &peers {
            row.push(match (value("mqtt5d"), value(p)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".into(),
            });
        }
        table.row(row);
    }
    table
}

/// Thousands separated above 100, two decimals below.
fn format_value(v: f64) -> String {
    if v >= 100.0 {
        crate::report::rate(v)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        let text = "\
result scenario=fan-in broker=mqtt5d case=qos1-64B-4p-1s pin=none msgs_per_s=200 verified=ok
result scenario=fan-in broker=mosquitto case=qos1-64B-4p-1s pin=none msgs_per_s=100 verified=ok
result scenario=fan-in broker=mqtt5d case=qos1-64B-4p-1s pin=none msgs_per_s=400 verified=ok
result scenario=fan-in broker=mqtt5d case=qos1-64B-4p-1s pin=none msgs_per_s=300 verified=ok
result scenario=fan-in broker=mosquitto case=qos1-64B-4p-1s pin=none msgs_per_s=200 verified=ok
noise
";
        let table = summarize(text).to_string();
        assert!(table.contains("| 300 | 150 | 2.00× |"), "{table}");
    }
}
