//! The broker's topic trees under load: matching a PUBLISH topic against 100k subscriptions,
//! subscribing and unsubscribing them, and replaying wildcard filters over 1M retained topics.
//!
//! Run: `cargo bench -p mqtt5-broker --features bench --bench topic_tree`. It prints Markdown
//! tables. Each timed figure is the median of several rounds. The trees are private to the
//! crate: the `bench` feature exposes them through thin wrappers (`mqtt5_broker::bench`).
//! Inputs come from a fixed-seed generator, so every run measures the same trees.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mqtt5_broker::bench::{RetainedMessages, Subscriptions};

/// Subscriptions in the subscription tree, one session each.
const SUBSCRIPTIONS: u32 = 100_000;
/// Sites in the subscription workload.
const SITES: u64 = 1_000;
/// Devices per site in the subscription workload.
const DEVICES: u64 = 100;
/// Metrics per device.
const METRICS: [&str; 4] = ["temp", "humidity", "power", "status"];
/// Distinct topics each lookup round runs through.
const LOOKUP_TOPICS: usize = 10_000;
/// Sites, devices per site and metrics per device of the retained topics: 1M in all.
const RETAINED_SHAPE: (u64, u64, u64) = (100, 1_000, 10);
/// How long to keep repeating a measurement, at least.
const MIN_TIME: Duration = Duration::from_millis(300);
/// Rounds to run at least.
const MIN_ROUNDS: usize = 3;

/// A fixed-seed generator (SplitMix64): the same inputs on every run.
struct Rng(u64);

impl Rng {
    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One of `items`.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A topic a device publishes on: 4 to 6 levels.
fn device_topic(rng: &mut Rng) -> String {
    let (s, d, m) = (rng.below(SITES), rng.below(DEVICES), rng.pick(&METRICS));
    match rng.below(10) {
        0..=6 => format!("site/{s}/dev/{d}/{m}"),
        7..=8 => format!("site/{s}/dev/{d}/{m}/raw"),
        _ => format!("site/{s}/alarm/{d}"),
    }
}

/// A subscription's filter: 60% exact topics, 25% with `+`, 15% with `#`.
fn filter(rng: &mut Rng) -> String {
    let r = rng.below(100);
    let (s, d, m) = (rng.below(SITES), rng.below(DEVICES), rng.pick(&METRICS));
    if r < 60 {
        device_topic(rng)
    } else if r < 85 {
        match rng.below(4) {
            0 => format!("site/{s}/dev/+/{m}"),
            1 => format!("site/{s}/dev/{d}/+"),
            2 => format!("site/{s}/alarm/+"),
            _ => format!("+/{s}/dev/{d}/{m}"),
        }
    } else {
        match rng.below(3) {
            0 => format!("site/{s}/dev/{d}/#"),
            1 => format!("site/{s}/#"),
            _ => format!("site/{s}/alarm/#"),
        }
    }
}

/// The wall clock, which a benchmark reads (`clippy.toml` bans it in the broker core).
#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
fn now() -> Instant {
    Instant::now()
}

/// The median of `samples`.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Runs `round` until both [`MIN_ROUNDS`] and [`MIN_TIME`] are reached (or `max_rounds`);
/// returns the median round time.
fn measure(max_rounds: usize, mut round: impl FnMut()) -> Duration {
    let start = now();
    let mut samples = Vec::new();
    while samples.len() < max_rounds && (samples.len() < MIN_ROUNDS || start.elapsed() < MIN_TIME) {
        let t = now();
        round();
        samples.push(t.elapsed());
    }
    median(&mut samples)
}

/// A duration with a unit that suits it.
fn fmt_time(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate per second with a unit that suits it.
fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} /s")
    }
}

/// The resident set size of this process in bytes, where `/proc` tells it.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The growth of the resident set between two readings, in MiB.
fn fmt_rss(before: Option<u64>, after: Option<u64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:.0} MiB", a.saturating_sub(b) as f64 / f64::from(1 << 20)),
        _ => "n/a".to_owned(),
    }
}

/// Matches every topic once; returns the matches seen.
fn match_all(tree: &Subscriptions, topics: &[String]) -> u64 {
    let mut matches = 0u64;
    for topic in topics {
        tree.for_each_match(black_box(topic), |session, value| {
            matches += 1;
            black_box((session, value));
        });
    }
    matches
}

/// A filter-against-topic matcher, for the linear-scan reference row.
fn naive_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && matches!(filter.chars().next(), Some('+' | '#')) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some(a), Some(b)) if a == "+" || a == b => {}
            _ => return false,
        }
    }
}

fn main() {
    let bench_start = now();
    let mut rng = Rng(0x0123_4567_89AB_CDEF);

    // The 100k subscriptions, then 1M retained topics, built first so that the resident
    // set growth of each is read before any other allocation comes and goes.
    let filters: Vec<String> = (0..SUBSCRIPTIONS).map(|_| filter(&mut rng)).collect();
    let rss0 = rss_bytes();
    let mut tree = Subscriptions::new();
    for (i, f) in filters.iter().enumerate() {
        tree.insert(f, i as u32, i as u32);
    }
    let rss1 = rss_bytes();
    let (sites, devices, metrics) = RETAINED_SHAPE;
    let total = sites * devices * metrics;
    // Inserted in a scattered order, as publishers would set them.
    let retained_topics: Vec<String> = (0..total)
        .map(|i| (i * 7_919) % total)
        .map(|i| {
            let (s, d, m) = (i / (devices * metrics), i / metrics % devices, i % metrics);
            format!("site/{s}/dev/{d}/m{m}")
        })
        .collect();
    let rss2 = rss_bytes();
    let t = now();
    let mut retained = RetainedMessages::new();
    for (i, topic) in retained_topics.iter().enumerate() {
        retained.insert(topic, i as u64);
    }
    let retained_build = t.elapsed();
    let rss3 = rss_bytes();

    // Lookup topics: ones that some exact filter names (so at least one match), and ones
    // under a root no filter names (only the `+/…` filters are tried, and fail).
    let exact: Vec<&String> = filters.iter().filter(|f| !f.contains(['+', '#'])).collect();
    let hits: Vec<String> = (0..LOOKUP_TOPICS)
        .map(|_| exact[rng.below(exact.len() as u64) as usize].clone())
        .collect();
    let misses: Vec<String> = (0..LOOKUP_TOPICS)
        .map(|_| {
            let (s, d, m) = (rng.below(SITES), rng.below(DEVICES), rng.pick(&METRICS));
            format!("plant/{s}/line/{d}/{m}")
        })
        .collect();

    println!("### Subscription tree: 100k subscriptions\n");
    println!(
        "One session per filter: 60% exact (`site/N/dev/M/temp`, 4 to 6 levels), 25% with `+`, \
         15% with `#`; {} nodes. Lookups run over {LOOKUP_TOPICS} distinct topics.\n",
        tree.node_count()
    );
    println!("| Operation | Time per operation | Rate | Mean matches per lookup |");
    println!("|---|---:|---:|---:|");
    for (name, topics) in [
        ("match a topic that has subscribers", &hits),
        ("match a topic that has none", &misses),
    ] {
        let matches = match_all(&tree, topics);
        let round = measure(100, || {
            black_box(match_all(&tree, topics));
        });
        let per = round / topics.len() as u32;
        println!(
            "| {name} | {} | {} | {:.2} |",
            fmt_time(per),
            fmt_rate(topics.len() as f64 / round.as_secs_f64()),
            matches as f64 / topics.len() as f64
        );
    }
    // What a scan over every filter would cost, for scale.
    let scan_topics = &hits[..20];
    let round = measure(3, || {
        for topic in scan_topics {
            let n = filters.iter().filter(|f| naive_matches(f, topic)).count();
            black_box(n);
        }
    });
    let per = round / scan_topics.len() as u32;
    println!(
        "| (reference) a linear scan of the 100k filters, per topic | {} | {} | |",
        fmt_time(per),
        fmt_rate(1.0 / per.as_secs_f64())
    );
    let mut order: Vec<usize> = (0..filters.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut inserts = Vec::new();
    let mut removes = Vec::new();
    for _ in 0..MIN_ROUNDS {
        let t = now();
        let mut fresh = Subscriptions::new();
        for (i, f) in filters.iter().enumerate() {
            fresh.insert(black_box(f), i as u32, i as u32);
        }
        inserts.push(t.elapsed());
        let t = now();
        for &i in &order {
            black_box(fresh.remove(&filters[i], i as u32));
        }
        removes.push(t.elapsed());
        assert_eq!(fresh.node_count(), 0);
    }
    for (name, samples) in [
        ("subscribe: insert 100k into an empty tree", &mut inserts),
        (
            "unsubscribe: remove all 100k, shuffled, pruning",
            &mut removes,
        ),
    ] {
        let round = median(samples);
        let per = round / SUBSCRIPTIONS;
        println!(
            "| {name} | {} | {} | |",
            fmt_time(per),
            fmt_rate(f64::from(SUBSCRIPTIONS) / round.as_secs_f64())
        );
    }
    println!(
        "\nResident set growth for the 100k subscriptions: {} (approximate).\n",
        fmt_rss(rss0, rss1)
    );

    println!("### Retained messages: 1M topics\n");
    println!(
        "Topics `site/S/dev/D/mM` with {sites} sites, {devices} devices per site and {metrics} \
         metrics per device, inserted in a scattered order; values are 8-byte handles. \
         Building the tree took {} ({} inserts); the resident set grew by {} (approximate).\n",
        fmt_time(retained_build),
        fmt_rate(total as f64 / retained_build.as_secs_f64()),
        fmt_rss(rss2, rss3),
    );
    println!("| Filter | Messages visited | Time per replay | Messages visited per second |");
    println!("|---|---:|---:|---:|");
    for filter in [
        "site/7/dev/42/#",
        "site/+/dev/42/m3",
        "site/7/dev/+/m3",
        "site/+/dev/42/+",
        "site/7/#",
        "site/+/dev/+/m3",
        "#",
        "+/+/+/+/+",
    ] {
        let mut visited = 0u64;
        retained.for_each_match(filter, |_| visited += 1);
        let round = measure(50, || {
            let mut n = 0u64;
            retained.for_each_match(black_box(filter), |v| {
                n += 1;
                black_box(v);
            });
            black_box(n);
        });
        println!(
            "| `{filter}` | {visited} | {} | {} |",
            fmt_time(round),
            fmt_rate(visited as f64 / round.as_secs_f64())
        );
    }
    let probes: Vec<&String> = (0..LOOKUP_TOPICS)
        .map(|_| &retained_topics[rng.below(total) as usize])
        .collect();
    let round = measure(100, || {
        for topic in &probes {
            black_box(retained.get(black_box(topic)));
        }
    });
    println!(
        "| get one topic (no wildcard) | 1 | {} | {} |",
        fmt_time(round / probes.len() as u32),
        fmt_rate(probes.len() as f64 / round.as_secs_f64())
    );
    let t = now();
    let none = retained.retain(|v| black_box(v) != &u64::MAX);
    let keep_all = t.elapsed();
    let t = now();
    let tenth = retained.retain(|v| v % 10 != 0);
    let drop_tenth = t.elapsed();
    println!("\n| Expiry sweep over 1M | Removed | Time |");
    println!("|---|---:|---:|");
    println!(
        "| `retain`, nothing expired | {none} | {} |",
        fmt_time(keep_all)
    );
    println!(
        "| `retain`, a tenth expired, pruned | {tenth} | {} |",
        fmt_time(drop_tenth)
    );
    println!("\nWhole bench: {}.", fmt_time(bench_start.elapsed()));
}
