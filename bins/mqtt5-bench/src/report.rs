//! How results are printed: one machine-readable result line per run, as it finishes, and
//! Markdown tables for people at the end.
//!
//! A result line is `result scenario=NAME key=value ...`, values without spaces, so that
//! scripts can `grep '^result '` and split on whitespace and `=`.

use std::fmt::{self, Write as _};
use std::time::Duration;

/// One `result` line, built key by key.
#[derive(Debug, Clone)]
pub(crate) struct ResultLine(String);

impl ResultLine {
    /// A line for `scenario`.
    pub(crate) fn new(scenario: &str) -> Self {
        Self(format!("result scenario={scenario}"))
    }

    /// Adds `key=value`; spaces in the value become `_`.
    #[must_use]
    pub(crate) fn field(mut self, key: &str, value: impl fmt::Display) -> Self {
        let value = value.to_string().replace(char::is_whitespace, "_");
        let _ = write!(self.0, " {key}={value}");
        self
    }
}

impl fmt::Display for ResultLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Markdown table.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    header: Vec<String>,
    /// Whether each column is right-aligned (numbers).
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; `(name, numeric)`.
    pub(crate) fn new(columns: &[(&str, bool)]) -> Self {
        Self {
            header: columns.iter().map(|(name, _)| (*name).to_owned()).collect(),
            numeric: columns.iter().map(|&(_, numeric)| numeric).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| {} |", self.header.join(" | "))?;
        let rule: Vec<&str> = self
            .numeric
            .iter()
            .map(|&n| if n { "---:" } else { "---" })
            .collect();
        writeln!(f, "|{}|", rule.join("|"))?;
        for row in &self.rows {
            writeln!(f, "| {} |", row.join(" | "))?;
        }
        Ok(())
    }
}

/// Latencies of a run, sorted once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies(Vec<u64>);

impl Latencies {
    /// From nanosecond samples in any order.
    pub(crate) fn from_nanos(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// The `q` quantile (0 to 1), nearest rank; zero without samples.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q.clamp(0.0, 1.0) * self.0.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.0.len()) - 1;
        Duration::from_nanos(self.0.get(i).copied().unwrap_or_default())
    }
}

/// A duration for people: µs below a millisecond, else ms.
pub(crate) fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// A rate for people: thousands separated.
pub(crate) fn rate(per_second: f64) -> String {
    let n = per_second.round() as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
